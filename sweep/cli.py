"""The ``bao-pareto`` entry point.

The dispatch table maps each subcommand to the ``cli`` module of the package that owns it;
that module is imported only when its subcommand runs, so ``bao-pareto baselines`` never
imports the sweep machinery, and no import goes against ``dashboard -> analysis -> sweep -> bao``.
Each module exposes ``COMMANDS`` (name -> help), ``build_parser(name)`` and
``run(name, argv) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import Final

from bao import __version__
from bao.errors import BaoError

# subcommand -> (module, one-line help). Later packages add their rows here.
DISPATCH: Final[dict[str, tuple[str, str]]] = {
    "sweep": ("sweep.commands", "run a sweep (or resume it) until n_trials trials are complete"),
    "worker": ("sweep.commands", "join a running sweep through its shared storage"),
    "status": ("sweep.commands", "trials of a sweep: states, parameters, values, MLflow runs"),
    "front": ("analysis.cli", "Pareto front, hypervolume and Pass@U-k envelope of a sweep"),
    "select": ("analysis.cli", "deployment variants per user-involvement budget (--register)"),
    "import": ("analysis.cli", "a BAO/UserRL validation dump as an MLflow run (trajectories)"),
    "train": ("bao.cli", "one training run (simulator backend), logged to MLflow"),
    "baselines": ("bao.cli", "evaluate scripted reference policies on Function-Gym tasks"),
    "dashboard": ("dashboard.cli", "browse sweeps, fronts and trials; register variants"),
}

EXIT_USAGE: Final = 2


def add_workspace_option(parser: argparse.ArgumentParser) -> None:
    """``--workspace``, as every sweep, analysis and dashboard subcommand takes it."""
    parser.add_argument(
        "--workspace",
        help="MLflow database, artifacts and sweep storages (default $BAO_PARETO_HOME or "
        "./bao-runs)",
    )


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bao-pareto",
        description="Multi-objective sweeps of proactive-agent RL training (BAO).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="commands:\n"
        + "\n".join(f"  {name:<12} {text}" for name, (_, text) in DISPATCH.items())
        + "\n\nRun 'bao-pareto COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"bao-pareto {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log progress at INFO level to stderr"
    )
    parser.add_argument("command", choices=sorted(DISPATCH), metavar="COMMAND")
    parser.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one subcommand; returns the process exit status."""
    arguments = _top_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(
        level=logging.INFO if arguments.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not arguments.verbose:
        # MLflow and Optuna announce routine steps (new tables, new studies) at INFO on
        # stderr; the CLI's own display says what matters.
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
        # The variable is read when mlflow is first imported; where that already happened
        # (a test session, an embedding program) its logger is set directly.
        logging.getLogger("mlflow").setLevel(logging.WARNING)
    module_name, _ = DISPATCH[arguments.command]
    try:
        module = importlib.import_module(module_name)
        return int(module.run(arguments.command, list(arguments.args)))
    except BaoError as error:
        if arguments.debug:
            raise
        print(f"bao-pareto {arguments.command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
