"""The ``analysis`` package's subcommands: ``front`` and ``select`` (loaded by ``sweep.cli``).

``front SWEEP``: the Pareto front of a sweep with hypervolume, intervals, the probability that
each trial is non-dominated, the knee and the Pass@U-k envelope. ``select SWEEP --budget K``:
one deployment variant per user-involvement budget (plus the knee), why each was chosen and
by how much; ``--register`` puts them in the MLflow model registry. Only this module prints.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweep.cli import add_workspace_option

if TYPE_CHECKING:
    import pandas as pd
    from rich.console import Console

    from analysis.loader import SweepData
    from analysis.report import FrontAnalysis

COMMANDS = {
    "front": "Pareto front, hypervolume and Pass@U-k envelope of a sweep",
    "select": "deployment variants per user-involvement budget; --register puts them in MLflow",
    "import": "a BAO/UserRL (verl) validation dump as an MLflow run with trajectories and metrics",
}


def build_parser(command: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"bao-pareto {command}", description=COMMANDS[command])
    if command == "import":
        return _import_parser(parser)
    parser.add_argument("sweep", help="the sweep's name (or its config file)")
    add_workspace_option(parser)
    parser.add_argument(
        "--draws",
        type=int,
        default=1000,
        help="resampled evaluations for intervals and probabilities (default 1000)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the resampling (default 0)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    if command == "front":
        parser.add_argument(
            "--reference-table",
            metavar="CSV",
            help="published results to set beside the envelope, e.g. the BAO paper's Table 1 "
            "(columns model, group, gym, pass_at_u_K ...)",
        )
        parser.add_argument(
            "--gym", default="function_gym", help="the reference table's gym (default function_gym)"
        )
    if command == "select":
        parser.add_argument(
            "--budget",
            type=int,
            action="append",
            default=[],
            metavar="K",
            help="user-involved actions the deployment allows: picks the best Pass@U-K "
            "(repeatable)",
        )
        parser.add_argument(
            "--hv-subset",
            type=int,
            metavar="N",
            help="also pick the N front trials that keep the most hypervolume (aliases hv-1..)",
        )
        parser.add_argument(
            "--no-knee", action="store_true", help="do not select (or register) the knee"
        )
        parser.add_argument(
            "--register",
            action="store_true",
            help="register the variants in the MLflow model registry with their aliases",
        )
    return parser


def run(command: str, argv: list[str]) -> int:
    parser = build_parser(command)
    args = parser.parse_args(argv)
    if command == "import":
        return _import(args)
    if args.draws < 1:
        parser.error(f"--draws must be at least 1, got {args.draws}")
    if logging.getLogger().getEffectiveLevel() > logging.INFO:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
    if command == "select":
        if not args.budget and args.hv_subset is None and args.no_knee:
            parser.error("nothing to select: give --budget K, --hv-subset N or keep the knee")
        bad = [k for k in args.budget if k < 1]
        if bad:
            parser.error(f"--budget must be at least 1, got {bad[0]}")
        if args.hv_subset is not None and args.hv_subset < 1:
            parser.error(f"--hv-subset must be at least 1, got {args.hv_subset}")
    references = None
    if command == "front" and args.reference_table:
        # Checked before the sweep is read: a bad table is reported however the sweep is.
        from analysis.imports import load_reference_table, reference_points

        references = reference_points(load_reference_table(args.reference_table), args.gym)
    data = _load(args)
    from analysis.report import analyse_front

    analysis = analyse_front(data, n_draws=args.draws, seed=args.seed)
    if command == "front":
        return _front(analysis, args, references)
    return _select(analysis, args)


def _load(args: argparse.Namespace) -> SweepData:
    from analysis.loader import load_sweep
    from bao.tracking import resolve_workspace, workspace_path

    name = args.sweep
    if name.endswith((".yaml", ".yml")) and Path(name).is_file():
        from sweep.config import sweep_name_of

        name = sweep_name_of(name)
    # Reading a sweep creates nothing: a workspace that is not there holds no sweep, and
    # load_sweep says so (with the sweeps it knows) without the folder being made.
    workspace = workspace_path(args.workspace).resolve()
    if workspace.is_dir():
        workspace = resolve_workspace(workspace)  # checked for writing: caches, --register
    args.workspace_path = workspace
    return load_sweep(workspace, name)


def _console() -> Console:
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=160)


# ------------------------------------------------------------------------------------ front


def _front(
    analysis: FrontAnalysis, args: argparse.Namespace, references: pd.DataFrame | None
) -> int:
    from analysis.report import front_document

    document = front_document(analysis)
    if references is not None:
        document["reference_points"] = references.to_dict("records")
    if args.json:
        print(json.dumps(document))
        return 0
    console = _console()
    _print_front(analysis, document, console)
    if "front_cost" in document:
        from sweep.cost import summary_line

        console.print(f"cost of the front's trials: {summary_line(document['front_cost'])}")
        console.print(f"cost of every attempt: {summary_line(document['cost'])}")
    if references is not None:
        _print_references(analysis, references, args.gym, console)
    return 0


def _print_references(analysis: FrontAnalysis, references: Any, gym: str, console: Console) -> None:
    from rich.table import Table

    best = dict(zip(analysis.envelope["k"], analysis.envelope["pass_rate"], strict=True))
    ks = sorted(int(k) for k in references["k"].unique())
    table = Table(title=f"Published results on {gym} beside this sweep's envelope")
    table.add_column("model")
    table.add_column("group")
    for k in ks:
        table.add_column(f"Pass@U-{k}", justify="right")
    table.add_row(
        f"this sweep (best per k, {analysis.data.name})",
        "envelope",
        *[f"{best[k]:.3f}" if k in best else "" for k in ks],
    )
    for (model, group), rows in references.groupby(["model", "group"], sort=False):
        rates = dict(zip(rows["k"], rows["pass_rate"], strict=True))
        table.add_row(
            str(model), str(group), *[f"{rates[k]:.3f}" if k in rates else "" for k in ks]
        )
    console.print(table)
    console.print(
        "The published numbers are LLM agents on UserRL's held-out tasks; the simulator's are "
        "on its own generated tasks: compare shapes, not levels."
    )


def _print_front(analysis: FrontAnalysis, document: dict[str, Any], console: Console) -> None:
    from rich.table import Table

    data = analysis.data
    reference = analysis.reference
    sources = ", ".join(
        f"{m} {p:g} ({s})"
        for m, p, s in zip(data.metrics, reference.point, reference.sources, strict=True)
    )
    pruned = f" ({document['pruned']} pruned trials left out)" if document.get("pruned") else ""
    console.print(
        f"sweep {data.name}: {len(analysis.frame)} complete trials{pruned}, "
        f"{len(analysis.front_numbers)} on the front; hypervolume {analysis.hypervolume:.4f} "
        f"(reference point {sources})"
    )
    if not reference.governed:
        console.print(
            "[yellow]the reference point comes from the data: hypervolumes are not comparable "
            "over time; set objective thresholds in the sweep config[/]"
        )
    table = Table(title="Pareto front (95% intervals; P(nd): probability of being non-dominated)")
    table.add_column("trial", justify="right")
    for path in data.loaded.config.search_space:
        table.add_column(path.rsplit(".", 1)[-1], justify="right")
    for metric in data.metrics:
        table.add_column(metric, justify="right")
    table.add_column("P(nd)", justify="right")
    table.add_column("HV contrib.", justify="right")
    table.add_column("note")
    by_number = {t["number"]: t for t in document["trials"]}
    order = sorted(
        range(len(analysis.frame)),
        key=lambda i: (-analysis.p_nondominated[i], int(analysis.frame["number"].iloc[i])),
    )
    shown = [i for i in order if analysis.pareto[i] or analysis.p_nondominated[i] >= 0.05]
    for i in shown:
        number = int(analysis.frame["number"].iloc[i])
        trial = by_number[number]
        notes = []
        if analysis.pareto[i]:
            notes.append("front")
        if number == analysis.knee:
            notes.append("knee")
        if trial.get("collapsed"):
            notes.append("collapsed: never answers")
        if not analysis.feasible[i]:
            notes.append("infeasible")
        cells = [str(number)]
        cells += [_param(trial["params"].get(p)) for p in data.loaded.config.search_space]
        for j in range(len(data.metrics)):
            cells.append(
                f"{analysis.values[i, j]:.3f} [{analysis.low[i, j]:.3f}, {analysis.high[i, j]:.3f}]"
            )
        cells += [
            f"{analysis.p_nondominated[i]:.2f}",
            f"{analysis.contributions[i]:.4f}",
            ", ".join(notes),
        ]
        table.add_row(*cells)
    console.print(table)
    if not analysis.envelope.empty:
        envelope = Table(title="Pass@U-k envelope: best pass rate per budget k")
        for column in ("k", "best", "95% interval", "trial", "attained within interval by"):
            envelope.add_column(column, justify="right")
        for _, row in analysis.envelope.iterrows():
            attainers = row["attainers"]
            listed = ", ".join(map(str, attainers[:8])) + (" ..." if len(attainers) > 8 else "")
            envelope.add_row(
                str(row["k"]),
                f"{row['pass_rate']:.3f}",
                f"[{row['lo']:.3f}, {row['hi']:.3f}]",
                str(row["trial"]),
                f"{len(attainers)} trials: {listed}",
            )
        console.print(envelope)


def _param(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


# ----------------------------------------------------------------------------------- select


def _select(analysis: FrontAnalysis, args: argparse.Namespace) -> int:
    from analysis.selection import select_variants

    data = analysis.data
    variants = select_variants(
        data,
        args.budget,
        hv_subset=args.hv_subset,
        knee=not args.no_knee,
        n_draws=args.draws,
        seed=args.seed,
    )
    registered = []
    untouched: dict[str, str] = {}
    if args.register:
        from analysis.registry import other_aliases, register_variants

        registered = register_variants(analysis, variants, args.workspace_path)
        untouched = other_aliases(analysis, [v.alias for v in variants], args.workspace_path)
    if args.json:
        document = {
            "sweep": data.name,
            "front_hash": analysis.front_hash(),
            "variants": [variant.to_dict() for variant in variants],
            "registered": [entry.to_dict() for entry in registered],
            "other_aliases": untouched,
        }
        print(json.dumps(document))
        return 0
    console = _console()
    console.print(
        f"sweep {data.name}: {len(analysis.frame)} complete trials, front "
        f"{analysis.front_numbers} (hash {analysis.front_hash()})"
    )
    for variant in variants:
        console.print(f"[bold]{variant.alias}[/]: trial {variant.number}: {variant.reason}")
    chosen: dict[int, list[str]] = {}
    for variant in variants:
        chosen.setdefault(variant.number, []).append(variant.alias)
    shared = {n: a for n, a in chosen.items() if len(a) > 1}
    for number, aliases in shared.items():
        console.print(f"trial {number} serves {', '.join(aliases)}: one model, several aliases")
    for entry in registered:
        action = "registered as new version" if entry.created else "kept version"
        moved = f" (moved from version {entry.previous_version})" if entry.previous_version else ""
        console.print(
            f"{entry.alias}: {entry.model_name} {action} {entry.version}{moved}; manifest "
            f"{entry.manifest_uri}"
        )
    if untouched:
        shown = ", ".join(f"{alias} -> version {version}" for alias, version in untouched.items())
        console.print(
            f"[yellow]aliases from earlier selections, not set now: {shown}[/] (delete them with "
            "MlflowClient.delete_registered_model_alias if they no longer apply)"
        )
    if registered:
        console.print(
            f"load one with mlflow.pytorch.load_model('models:/{registered[0].model_name}"
            f"@{registered[0].alias}')"
        )
    return 0


# ----------------------------------------------------------------------------------- import


def _import_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("dump", help="a verl validation dump: <step>.jsonl, or their folder")
    parser.add_argument(
        "--tasks",
        required=True,
        help="the Function-Gym tasks it was validated on (UserRL .json, .jsonl or .parquet)",
    )
    parser.add_argument(
        "--functions", help="with a parquet --tasks: the UserRL functions file it refers to"
    )
    parser.add_argument(
        "--experiment", default="imported", help="MLflow experiment to log into (default imported)"
    )
    parser.add_argument("--max-turns", type=int, default=16, help="turn budget (default 16)")
    parser.add_argument("--k-max", type=int, default=9, help="largest k of Pass@U-k (default 9)")
    parser.add_argument("--step", type=int, help="validation step to import (default: the last)")
    parser.add_argument(
        "--match",
        choices=["id", "position"],
        default="id",
        help="match rows to tasks by an id in the row (default) or by file order",
    )
    parser.add_argument(
        "--samples-per-task", type=int, default=1, help="with --match position: rows per task"
    )
    add_workspace_option(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def _import(args: argparse.Namespace) -> int:
    import tempfile

    from analysis.imports import import_validation_dump
    from bao import records
    from bao.tasks import load_function_tasks, task_set_hash
    from bao.tracking import (
        code_version,
        experiment_id,
        log_params,
        mlflow_client,
        resolve_workspace,
    )
    from bao.trajectory import write_trajectories

    tasks = load_function_tasks(args.tasks, args.functions)
    dump = import_validation_dump(
        args.dump,
        tasks,
        max_turns=args.max_turns,
        k_max=args.k_max,
        step=args.step,
        match=args.match,
        samples_per_task=args.samples_per_task,
    )
    # Everything is checked before the run is opened: a bad dump leaves nothing behind.
    workspace = resolve_workspace(args.workspace)
    client = mlflow_client(workspace, writing=True)
    seen = {t.task_id for t in dump.trajectories}
    run = client.create_run(
        experiment_id(client, args.experiment, workspace),
        run_name=Path(args.dump).name,
        tags={
            records.TAG_ROLE: records.ROLE_IMPORT,
            records.TAG_SOURCE: str(Path(args.dump).resolve()),
            records.TAG_EVAL_SET_HASH: task_set_hash(t for t in tasks if t.id in seen),
            records.TAG_CODE_VERSION: code_version(),
        },
    )
    run_id = run.info.run_id
    log_params(
        client,
        run_id,
        {"max_turns": args.max_turns, "k_max": args.k_max, "step": dump.step, "match": args.match},
    )
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    client.log_batch(
        run_id,
        metrics=[
            Metric(f"eval/{k}", float(v), now, dump.step or 0) for k, v in dump.metrics.items()
        ],
    )
    report = {
        "source": dump.source,
        "step": dump.step,
        "n_rows": dump.n_rows,
        "imported": len(dump.trajectories),
        "skipped": dump.skipped,
        "score_mismatches": dump.score_mismatches,
        "notes": dump.notes,
        "matched_by": dump.matched_by,
    }
    with tempfile.TemporaryDirectory() as folder:
        trajectories = Path(folder) / records.ARTIFACT_TRAJECTORIES
        report_path = Path(folder) / records.ARTIFACT_IMPORT_REPORT
        write_trajectories(dump.trajectories, trajectories)
        report_path.write_text(json.dumps(report, indent=2))
        client.log_artifact(run_id, str(trajectories))
        client.log_artifact(run_id, str(report_path))
    client.set_terminated(run_id, status="FINISHED")
    document = {
        "run_id": run_id,
        "experiment": args.experiment,
        **{k: v for k, v in report.items() if k not in ("skipped", "score_mismatches", "notes")},
        "n_skipped": len(dump.skipped),
        "n_score_mismatches": len(dump.score_mismatches),
        **{f"eval/{k}": v for k, v in dump.metrics.items()},
    }
    if args.json:
        print(json.dumps(document))
        return 0
    console = _console()
    metrics = dump.metrics
    console.print(
        f"imported {len(dump.trajectories)} of {dump.n_rows} rows of {dump.source} "
        f"(step {dump.step}): Pass@U-1 {metrics['pass_at_u_1']:.3f}, score "
        f"{metrics['score']:.3f}, user involvement {metrics['user_involvement_rate']:.3f}"
    )
    for line in dump.skipped[:5]:
        console.print(f"skipped: {line}")
    for line in dump.score_mismatches[:5]:
        console.print(f"[yellow]score mismatch[/]: {line}")
    hidden = max(0, len(dump.skipped) - 5) + max(0, len(dump.score_mismatches) - 5)
    if hidden:
        console.print(f"... {hidden} more lines in the run's import_report.json")
    console.print(f"MLflow run {run_id} in experiment {args.experiment!r} ({workspace})")
    return 0
