"""Loading a sweep config: read, override, validate, then check it against its backend.

:func:`load_sweep_config` is where a sweep config becomes a :class:`~sweep.config.LoadedSweep`:
the YAML validated by :class:`~sweep.config.SweepConfig`, then the backend's own checks
(:meth:`sweep.backends.Backend.check`: every searched path exists in the training config and
accepts both ends of its range; the command's placeholders), then what holds for every
backend: each objective and constraint is a metric the backend logs, the algorithm takes the
constraints, a grid has enough points. A bad config is one line naming the key and the fix.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from bao.configuration import ConfigError, apply_overrides, read_yaml, validate
from sweep.algorithms import ALGORITHMS
from sweep.backends import backend_class
from sweep.config import LoadedSweep, SweepConfig


def load_sweep_config(path: str | Path, overrides: Sequence[str] = ()) -> LoadedSweep:
    """Reads, overrides and validates a sweep config and checks it against its backend."""
    source = Path(path)
    raw = apply_overrides(read_yaml(source), list(overrides))
    config = validate(SweepConfig, raw, source=str(source), overrides=overrides)
    return check_against_backend(config, source)


def check_against_backend(config: SweepConfig, source: Path) -> LoadedSweep:
    base_dir = source.resolve().parent
    train_config, names = backend_class(config.backend.kind).check(config, base_dir, str(source))
    if names:
        known = set(names)
        wanted = [(f"objectives[{i}].metric", o.metric) for i, o in enumerate(config.objectives)]
        wanted += [(f"constraints[{i}]", c.metric) for i, c in enumerate(config.constraints)]
        for key, metric in wanted:
            if metric not in known:
                raise ConfigError(
                    f"{source}: {key}: the {config.backend.kind} backend does not log {metric!r}",
                    fix=f"use one of {_suggest(metric, names)}",
                )
    if config.constraints and not config.driver.spec.handles_constraints:
        library, name = config.driver.library, config.driver.algorithm
        others = [
            spec.name
            for spec in ALGORITHMS.values()
            if spec.library == library and spec.handles_constraints
        ]
        raise ConfigError(
            f"{source}: constraints: {library}'s {name} does not handle constraints",
            fix=f"use driver.algorithm {' or '.join(others)}, or remove the constraints",
        )
    if config.driver.algorithm == "grid":
        from sweep.space import grid_size

        size = grid_size(config.search_space, config.driver.grid_points)
        if config.driver.n_trials > size:
            raise ConfigError(
                f"{source}: driver.n_trials ({config.driver.n_trials}) exceeds the grid's "
                f"{size} points",
                fix="lower driver.n_trials or raise driver.grid_points",
            )
    loaded = LoadedSweep(
        config=config,
        source=str(source.resolve()),
        base_dir=str(base_dir),
        train_config=train_config,
        metric_names=names,
    )
    from sweep.launchers import check_allocation

    check_allocation(loaded)
    return loaded


def _suggest(metric: str, names: Sequence[str]) -> str:
    import difflib

    close = difflib.get_close_matches(metric, names, n=3, cutoff=0.5)
    shown = close or [n for n in names if not n.endswith(("_lo", "_hi"))][:6]
    return ", ".join(shown) + ("" if close else ", ...")
