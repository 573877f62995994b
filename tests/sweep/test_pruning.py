"""The pruner's rules (sweep/pruning.py) against hand-computed expectations, and its config."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bao.configuration import ConfigError
from sweep import pruning
from sweep.config import PrunerConfig, SweepConfig
from tests.sweep.conftest import OBJECTIVES

MAX_MIN = ["maximize", "minimize"]


def settings(kind: str, **overrides: float) -> pruning.PrunerSettings:
    values: dict[str, float] = {
        "reduction_factor": 2,
        "min_trials": 2,
        "collapse_threshold": 0.9,
        "collapse_from_rung": 0,
        **overrides,
    }
    return pruning.PrunerSettings(
        kind=kind,
        reduction_factor=int(values["reduction_factor"]),
        min_trials=int(values["min_trials"]),
        collapse_threshold=values["collapse_threshold"],
        collapse_from_rung=int(values["collapse_from_rung"]),
    )


# ------------------------------------------------------------------------------------ rungs


@pytest.mark.parametrize(
    ("min_step", "eta", "max_step", "expected"),
    [
        (10, 3, 100, [10, 30, 90]),
        (10, 3, 90, [10, 30]),  # the last step itself is no rung: the run ends there anyway
        (5, 2, 41, [5, 10, 20, 40]),
        (50, 2, 50, []),
        (1, 2, None, [2**k for k in range(pruning.MAX_RUNGS)]),
    ],
)
def test_rung_steps(min_step: int, eta: int, max_step: int | None, expected: list[int]) -> None:
    assert pruning.rung_steps(min_step, eta, max_step) == expected


def test_rank_order_by_front_then_crowding() -> None:
    # Maximise score, minimise involvement. A=(0.5,0.1), B=(0.3,0.02), C=(0.1,0.01) are
    # mutually non-dominated; D=(0.3,0.2) is dominated by A; E=(0.05,0.5) by all of them.
    # On the first front the extremes A and C have infinite crowding distance, B a finite
    # one; A before C by index.
    points = [[0.3, 0.2], [0.5, 0.1], [0.3, 0.02], [0.1, 0.01], [0.05, 0.5]]
    assert pruning.rank_order(points, MAX_MIN) == [1, 3, 2, 0, 4]


def test_a_non_finite_value_counts_as_the_worst() -> None:
    # Without its NaN score, point 0 would be on the front (its involvement 0.0 is best).
    points = [[math.nan, 0.7], [0.1, 0.5], [0.2, 0.6]]
    assert pruning.rank_order(points, MAX_MIN)[-1] == 0
    points = [[math.nan, 0.0], [0.1, 0.5], [0.2, 0.6]]
    assert pruning.rank_order(points, MAX_MIN)[-1] != 0


def test_kept_at_rung_top_fraction() -> None:
    field = [[0.5, 0.1], [0.3, 0.02], [0.1, 0.01]]  # a front of three
    # Four points, eta 2: the top 2 go on. A dominated point does not.
    assert not pruning.kept_at_rung([0.2, 0.3], field, MAX_MIN, 2, 2)
    # A point dominating all three ranks first.
    assert pruning.kept_at_rung([0.6, 0.005], field, MAX_MIN, 2, 2)
    # eta 4: only the best one of four; a point on the front but in its middle (finite
    # crowding, the others' extremes infinite) is not it.
    assert not pruning.kept_at_rung([0.4, 0.05], field, MAX_MIN, 4, 2)


def test_kept_at_rung_waits_for_min_trials() -> None:
    # A hopeless point goes on while fewer than min_trials points reached the rung.
    assert pruning.kept_at_rung([0.0, 1.0], [[0.5, 0.1]], MAX_MIN, 2, 3)
    assert not pruning.kept_at_rung([0.0, 1.0], [[0.5, 0.1], [0.4, 0.1]], MAX_MIN, 2, 3)


def test_decide_collapse_and_rungs() -> None:
    field = [[0.5, 0.1], [0.3, 0.02]]
    good, bad = [0.6, 0.01], [0.0, 0.9]
    collapse = settings("collapse", collapse_threshold=0.9)
    assert pruning.decide(
        collapse, 0, point=bad, no_answer_rate=0.95, others=field, directions=MAX_MIN
    ) == pruning.Decision("prune", "collapse")
    # At the threshold counts as collapsed; below it does not, however bad the point.
    assert pruning.decide(
        collapse, 0, point=bad, no_answer_rate=0.9, others=field, directions=MAX_MIN
    ).prune
    assert not pruning.decide(
        collapse, 0, point=bad, no_answer_rate=0.89, others=field, directions=MAX_MIN
    ).prune
    # No rate logged: no evidence of collapse.
    assert not pruning.decide(
        collapse, 0, point=bad, no_answer_rate=None, others=field, directions=MAX_MIN
    ).prune
    late = settings("collapse", collapse_from_rung=1)
    assert not pruning.decide(
        late, 0, point=bad, no_answer_rate=1.0, others=field, directions=MAX_MIN
    ).prune
    assert pruning.decide(
        late, 1, point=bad, no_answer_rate=1.0, others=field, directions=MAX_MIN
    ).prune
    rungs = settings("rungs")
    assert pruning.decide(
        rungs, 0, point=bad, no_answer_rate=1.0, others=field, directions=MAX_MIN
    ) == pruning.Decision("prune", "rungs")
    assert not pruning.decide(
        rungs, 0, point=good, no_answer_rate=0.0, others=field, directions=MAX_MIN
    ).prune
    both = settings("rungs+collapse")
    # A collapsed point that still ranks first is stopped by the collapse rule.
    assert pruning.decide(
        both, 0, point=[0.9, 0.0], no_answer_rate=0.95, others=field, directions=MAX_MIN
    ) == pruning.Decision("prune", "collapse")
    none = settings("none")
    assert not pruning.decide(
        none, 0, point=bad, no_answer_rate=1.0, others=field, directions=MAX_MIN
    ).prune


def test_decision_round_trips_through_its_text() -> None:
    for decision in (pruning.Decision("continue"), pruning.Decision("prune", "rungs")):
        assert pruning.Decision.parse(str(decision)) == decision
    assert str(pruning.Decision("prune", "collapse")) == "prune:collapse"


def test_mean_evaluation() -> None:
    seeds = [{"a": 1.0, "b": 2.0}, {"a": 3.0, "b": 4.0}]
    assert pruning.mean_evaluation(seeds, ["a", "b"]) == {"a": 2.0, "b": 3.0}
    assert pruning.mean_evaluation([{"a": 1.0}], ["a", "b"]) is None
    assert pruning.mean_evaluation([], ["a"]) is None


# --------------------------------------------------------------------------------- progress


def test_read_progress_keeps_a_partial_last_line_for_later(tmp_path: Path) -> None:
    path = tmp_path / "progress.jsonl"
    assert pruning.read_progress(path) == ([], 0)  # not written yet
    first = json.dumps({"step": 10, "metrics": {"eval/score": 0.25, "flag": True}}) + "\n"
    partial = '{"step": 20, "metr'
    path.write_text(first + "not json\n" + partial)
    evaluations, offset = pruning.read_progress(path)
    assert evaluations == [pruning.Evaluation(10, {"eval/score": 0.25})]
    assert offset == len(first) + len("not json\n")
    with path.open("a") as handle:
        handle.write('ics": {"eval/score": 0.5}}\n')
    evaluations, offset = pruning.read_progress(path, offset)
    assert evaluations == [pruning.Evaluation(20, {"eval/score": 0.5})]
    assert offset == path.stat().st_size


def test_the_writer_in_bao_writes_what_the_reader_reads(tmp_path: Path) -> None:
    from bao.tracking import append_progress

    path = tmp_path / "progress.jsonl"
    append_progress(path, 3, {"eval/score": 0.5, "eval/x": math.nan})
    assert json.loads(path.read_text()) == {"step": 3, "metrics": {"eval/score": 0.5}}
    assert pruning.read_progress(path)[0] == [pruning.Evaluation(3, {"eval/score": 0.5})]


# ----------------------------------------------------------------------------------- config


def sweep_config(**pruner: object) -> SweepConfig:
    return SweepConfig.model_validate(
        {"name": "p", "objectives": OBJECTIVES, "pruner": pruner}
        if pruner
        else {"name": "p", "objectives": OBJECTIVES}
    )


def test_pruner_defaults_and_fingerprint() -> None:
    plain = sweep_config()
    assert plain.pruner == PrunerConfig()
    assert plain.pruner.kind == "none"
    # No pruner: the fingerprint of a sweep made before pruners existed is unchanged.
    assert "pruner" not in plain.identity()
    assert sweep_config(kind="none").fingerprint() == plain.fingerprint()
    # A pruner decides which trials end PRUNED: another pruner is another sweep.
    rungs = sweep_config(kind="rungs")
    assert rungs.fingerprint() != plain.fingerprint()
    assert rungs.fingerprint() != sweep_config(kind="rungs", min_step=20).fingerprint()
    assert rungs.pruner.rung_min_trials == rungs.pruner.reduction_factor == 3


@pytest.mark.parametrize(
    ("pruner", "key"),
    [
        ({"kind": "halving"}, "pruner.kind"),
        ({"kind": "rungs", "reduction_factor": 1}, "pruner.reduction_factor"),
        ({"kind": "collapse", "collapse_threshold": 1.5}, "pruner.collapse_threshold"),
        ({"kind": "rungs", "min_step": 0}, "pruner.min_step"),
        ({"kind": "rungs", "rungs": [1, 2]}, "pruner.rungs"),
    ],
)
def test_bad_pruner_values_are_one_line_naming_the_key(
    tmp_path: Path, pruner: dict[str, object], key: str
) -> None:
    import yaml

    from sweep.loading import load_sweep_config

    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"name": "bad", "objectives": OBJECTIVES, "pruner": pruner}))
    with pytest.raises(ConfigError) as raised:
        load_sweep_config(path)
    message = str(raised.value)
    assert key in message
    assert "\n" not in message


def test_a_pruner_with_a_pymoo_driver_is_refused(tmp_path: Path) -> None:
    import yaml

    from sweep.loading import load_sweep_config

    path = tmp_path / "bad.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "bad",
                "objectives": OBJECTIVES,
                "driver": {"library": "pymoo", "algorithm": "nsga2"},
                "pruner": {"kind": "collapse"},
            }
        )
    )
    with pytest.raises(ConfigError, match=r"pruner\.kind.*driver\.library optuna"):
        load_sweep_config(path)


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        (["pruner.kind=rungs", "pruner.min_step=60"], "pruner.min_step 60 is not below"),
        (["pruner.kind=collapse", "pruner.min_step=200"], "trainer.iterations 60"),
        (
            ["pruner.kind=collapse", "pruner.min_step=10", "pruner.collapse_from_rung=2"],
            "rungs at steps [10, 30]",
        ),
    ],
)
def test_a_pruner_that_could_never_decide_is_one_line(overrides: list[str], words: str) -> None:
    from sweep.loading import load_sweep_config

    quickstart = Path(__file__).resolve().parents[2] / "configs" / "quickstart.yaml"
    load_sweep_config(quickstart, ["pruner.kind=collapse", "pruner.min_step=10"])  # decides
    with pytest.raises(ConfigError) as caught:
        load_sweep_config(quickstart, overrides)
    assert words in str(caught.value)
    assert "\n" not in str(caught.value)


def test_verl_rungs_must_fall_on_its_validations() -> None:
    from sweep.loading import load_sweep_config

    verl = Path(__file__).resolve().parents[2] / "configs" / "verl" / "sweep_function_gym.yaml"
    load_sweep_config(verl, ["pruner.kind=collapse", "pruner.min_step=10"])  # test_freq 5
    with pytest.raises(ConfigError) as caught:
        load_sweep_config(verl, ["pruner.kind=collapse", "pruner.min_step=3"])
    assert "not a multiple of schedule.test_freq 5" in str(caught.value)
