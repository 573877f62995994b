"""The ``sweep`` package's subcommands: ``sweep``, ``worker`` and ``status``.

(``sweep/cli.py`` is the entry point with the dispatch table; these live apart from it so that
``bao-pareto train`` never imports Optuna.) Only this module prints; the runner reports
progress through a callback that is drawn here with rich.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from bao.configuration import add_override_option
from sweep.cli import add_workspace_option

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

    from sweep.config import LoadedSweep, Objective
    from sweep.progress import SweepProgress, SweepResult

COMMANDS = {
    "sweep": "run a sweep (or resume it) until n_trials trials are complete",
    "worker": "join a running sweep through its shared storage",
    "status": "trials of a sweep: states, parameters, values, MLflow runs",
}

EXIT_INTERRUPTED = 130


def build_parser(command: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"bao-pareto {command}", description=COMMANDS[command])
    if command == "status":
        parser.add_argument("sweep", help="the sweep's name (or its config file)")
        add_workspace_option(parser)
        parser.add_argument("--json", action="store_true", help="print one JSON object")
        return parser
    parser.add_argument("config", help="sweep config YAML, e.g. configs/quickstart.yaml")
    add_override_option(parser, "driver.algorithm=nsga2")
    parser.add_argument("--n-trials", type=int, help="complete trials to reach (default: config)")
    parser.add_argument("--jobs", type=int, help="trials run at once by this process")
    add_workspace_option(parser)
    if command == "sweep":
        parser.add_argument(
            "--resume",
            action="store_true",
            help="require an existing sweep of this name and continue it",
        )
    parser.add_argument(
        "--json", action="store_true", help="no live display; print the status JSON at the end"
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="validate the config and the training command at both ends of every range of "
        "the search space, one parameter at a time (verl: Hydra compose + validate_config), "
        "then stop without starting anything",
    )
    return parser


def run(command: str, argv: list[str]) -> int:
    parser = build_parser(command)
    args = parser.parse_args(argv)
    if logging.getLogger().getEffectiveLevel() > logging.INFO:
        import optuna  # its own stderr handler announces every new study at INFO

        optuna.logging.set_verbosity(optuna.logging.WARNING)
    if command == "status":
        return _status(args)
    for flag in ("n_trials", "jobs"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            parser.error(f"--{flag.replace('_', '-')} must be at least 1, got {value}")
    return _sweep(args, leader=command == "sweep")


# ------------------------------------------------------------------------------ sweep / worker


def _sweep(args: argparse.Namespace, *, leader: bool) -> int:
    from bao.records import MANIFEST_FILE
    from bao.tracking import resolve_workspace
    from sweep.loading import load_sweep_config
    from sweep.runner import SweepRunner
    from sweep.status import status_document
    from sweep.storage import sweep_dir

    loaded = load_sweep_config(args.config, args.overrides)
    if args.dry_run:
        return _dry_run(loaded, args)
    from sweep.launchers import preflight

    # e.g. verl without GPUs, or a Slurm controller that does not answer: one line now, not
    # trials stuck waiting
    preflight(loaded)
    from bao.tracking import workspace_path
    from sweep.session import check_free_space

    # Before the workspace is created: a full disk writes nothing, not even the folder.
    check_free_space(workspace_path(args.workspace), loaded.config.min_free_disk_mb)
    workspace = resolve_workspace(args.workspace)
    if (
        getattr(args, "resume", False)
        and not (sweep_dir(workspace, loaded.config.name) / MANIFEST_FILE).is_file()
    ):
        from bao.configuration import ConfigError

        raise ConfigError(
            f"--resume: no sweep named {loaded.config.name!r} in {str(workspace)!r}",
            fix="drop --resume to start it, or pass the workspace it ran in",
        )
    display = None if args.json else _display(loaded)
    runner = SweepRunner(
        loaded,
        workspace,
        leader=leader,
        jobs=args.jobs,
        n_trials=args.n_trials,
        on_progress=display.update if display else None,
    )
    runner.prepare()
    stops = 0

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stops
        stops += 1
        if stops > 1:
            raise KeyboardInterrupt  # a second Ctrl-C: stop waiting for the runs to close
        runner.stop()

    # A closed terminal (SIGHUP) stops the sweep as Ctrl-C does: its trials are interrupted,
    # not left to go stale (docs/reliability.md, scenario 2).
    stop_signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, on_signal) for sig in stop_signals}
    try:
        if display:
            with display:
                result = runner.run()
        else:
            result = runner.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if args.json:
        print(json.dumps(status_document(loaded, runner.study)))
    else:
        _print_result(result, loaded, workspace)
    return EXIT_INTERRUPTED if result.interrupted else 0


def _dry_run(loaded: LoadedSweep, args: argparse.Namespace) -> int:
    from sweep.backends import dry_run_commands

    checked = dry_run_commands(loaded, args.workspace)
    config = loaded.config
    job = None
    if config.launcher.kind != "local":
        from sweep.launchers import describe_first_run

        job = describe_first_run(loaded, args.workspace, checked[0]["params"] if checked else {})
    if args.json:
        document = {"sweep": config.name, "valid": True, "commands": checked}
        if job is not None:
            document["job"] = job
        print(json.dumps(document))
        return 0
    print(
        f"sweep {config.name!r}: {config.backend.kind} backend, {len(config.search_space)} "
        f"parameter(s), {len(config.objectives)} objectives, driver {config.driver.algorithm} "
        f"for {config.driver.n_trials} trials: valid"
    )
    for item in checked:
        print(f"  {item['params']}: {item['check']}")
    if job is not None:
        print(
            f"{config.launcher.kind} job of trial 0, seed {config.seed}, at {checked[0]['params']}:"
        )
        print(job, end="" if job.endswith("\n") else "\n")
    return 0


def _display(loaded: LoadedSweep) -> _LiveDisplay | _PlainDisplay:
    """A live view on a terminal; plain lines where stderr is a file, a pipe or a job log."""
    from rich.console import Console

    return _LiveDisplay(loaded) if Console(stderr=True).is_terminal else _PlainDisplay(loaded)


class _PlainDisplay:
    """One line per trial event and a summary every minute, on stderr (sweep/progress.py)."""

    def __init__(self, loaded: LoadedSweep) -> None:
        import threading

        from sweep.progress import PlainProgress

        self.lines = PlainProgress(loaded.config.name)
        self.lock = threading.Lock()  # trials report from their own threads

    def __enter__(self) -> _PlainDisplay:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def update(self, progress: SweepProgress) -> None:
        with self.lock:
            for line in self.lines.lines(progress):
                print(line, file=sys.stderr, flush=True)


class _LiveDisplay:
    """A rich live view: trials done/running/failed, the ETA and the front so far."""

    def __init__(self, loaded: LoadedSweep) -> None:
        from rich.console import Console
        from rich.live import Live

        self.loaded = loaded
        self.console = Console(stderr=True)
        self.live = Live(console=self.console, refresh_per_second=2, transient=False)
        self.latest: SweepProgress | None = None

    def __enter__(self) -> _LiveDisplay:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.__exit__(*exc)  # type: ignore[arg-type]

    def update(self, progress: SweepProgress) -> None:
        self.latest = progress
        self.live.update(self._render(progress))

    def _render(self, progress: SweepProgress) -> RenderableType:
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        from sweep.progress import summary_line

        config = self.loaded.config
        line = Text(summary_line(config.name, progress))
        finished = progress.complete + progress.pruned  # what counts towards n_trials
        bar = ProgressBar(total=progress.n_trials, completed=finished, width=50)
        table = Table(title=f"Pareto front so far ({len(progress.front)} trials)")
        table.add_column("trial", justify="right")
        for objective in config.objectives:
            table.add_column(_objective_header(objective), justify="right")
        for number, values in progress.front[:10]:
            table.add_row(str(number), *(f"{v:.4f}" for v in values))
        return Group(line, bar, table, Text(progress.last_event, style="dim"))


def _objective_header(objective: Objective) -> str:
    arrow = "max" if objective.direction == "maximize" else "min"
    return f"{objective.metric} ({arrow})"


def _print_result(result: SweepResult, loaded: LoadedSweep, workspace: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    from bao.records import MLFLOW_DB

    config = loaded.config
    console = Console()
    if not console.is_terminal:
        console = Console(width=140)
    state = "interrupted" if result.interrupted else "done"
    pruned = f"{result.pruned} pruned, " if result.pruned else ""
    console.print(
        f"sweep {result.name} {state}: {result.complete} complete, {pruned}{result.failed} failed "
        f"attempts (storage {result.storage_url})"
    )
    table = Table(title=f"Pareto front of {result.name} ({len(result.front)} trials)")
    table.add_column("trial", justify="right")
    for path in config.search_space:
        table.add_column(path.rsplit(".", 1)[-1], justify="right")
    for objective in config.objectives:
        table.add_column(_objective_header(objective), justify="right")
    for number, params, values in result.front:
        cells = [_cell(params[path]) for path in config.search_space]
        table.add_row(str(number), *cells, *(f"{v:.4f}" for v in values))
    console.print(table)
    console.print(f"trials:    bao-pareto status {result.name} --workspace {workspace}")
    console.print(f"dashboard: bao-pareto dashboard --workspace {workspace}")
    store = workspace / MLFLOW_DB
    console.print(f"MLflow:    mlflow ui --backend-store-uri sqlite:///{store}")


def _cell(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


# ------------------------------------------------------------------------------------ status


def _status(args: argparse.Namespace) -> int:
    from bao.tracking import workspace_path
    from sweep.records import open_sweep
    from sweep.status import status_document

    name = args.sweep
    if name.endswith((".yaml", ".yml")) and Path(name).is_file():
        from sweep.config import sweep_name_of

        name = sweep_name_of(name)
    # Read-only: a mistyped workspace or sweep name must not create a folder.
    workspace = workspace_path(args.workspace).resolve()
    opened = open_sweep(workspace, name)
    document = status_document(opened.loaded, opened.study)
    if args.json:
        print(json.dumps(document))
        return 0
    _print_status(document, opened.study.failure_reasons(), opened.loaded, _console())
    return 0


def _console() -> Console:
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=160)


def _print_status(
    document: dict[str, Any], reasons: dict[int, str], loaded: LoadedSweep, console: Console
) -> None:
    from rich.table import Table

    config = loaded.config
    pruned = f", {document['pruned']} pruned" if document.get("pruned") else ""
    console.print(
        f"sweep {document['sweep']}: {document['complete']}/{document['n_trials']} complete"
        f"{pruned}, {document['running']} running, {document['failed']} failed attempts; "
        f"{document['compute_seconds']:.0f} s of training"
    )
    if "cost" in document:
        from sweep.cost import summary_line

        console.print(
            f"cost of every attempt ({document['launcher']}): {summary_line(document['cost'])}"
        )
    table = Table()
    for column in ("trial", "state", *[p.rsplit(".", 1)[-1] for p in config.search_space]):
        table.add_column(column, justify="right")
    for objective in config.objectives:
        table.add_column(objective.metric, justify="right")
    table.add_column("retry of", justify="right")
    table.add_column("MLflow run / reason")
    for trial in document["trials"]:
        values = trial["values"] or [None] * len(config.objectives)
        stale = trial.get("stale")
        state = f"{trial['state']} (stale)" if stale else trial["state"]
        if trial.get("pruned"):
            state = f"PRUNED at rung {trial['pruned']['rung']} ({trial['pruned']['rule']})"
            values = trial["pruned"].get("values") or values
        table.add_row(
            str(trial["number"]),
            state,
            *[_cell(trial["params"].get(p, "")) for p in config.search_space],
            *["" if v is None else f"{v:.4f}" for v in values],
            "" if trial["retry_of"] is None else str(trial["retry_of"]),
            stale or reasons.get(trial["number"]) or trial["mlflow_run_id"] or "",
        )
    console.print(table)
