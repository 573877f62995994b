"""``bao-pareto dashboard``: the Streamlit app on a local port (loaded by ``sweep.cli``).

It binds 127.0.0.1 unless ``--host`` says otherwise: the app can register models and shows
everything in the workspace, so it is not for an open network without a proxy in front.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from pathlib import Path

from sweep.cli import add_workspace_option

COMMANDS = {"dashboard": "browse sweeps, fronts and trials and register variants in a web app"}
APP = Path(__file__).with_name("app.py")
DEFAULT_PORT = 8501


def build_parser(command: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"bao-pareto {command}", description=COMMANDS[command])
    add_workspace_option(parser)
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})"
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1: this machine only; use an SSH tunnel to "
        "reach it from elsewhere)",
    )
    parser.add_argument(
        "--reference-table",
        metavar="CSV",
        help="published results to draw on the frontier, e.g. the BAO paper's Table 1 "
        "(columns model, group, gym, pass_at_u_K ...)",
    )
    return parser


def run(command: str, argv: list[str]) -> int:
    parser = build_parser(command)
    args = parser.parse_args(argv)
    if not 0 < args.port < 65536:
        parser.error(f"--port must be in 1..65535, got {args.port}")
    workspace = _existing_workspace(args.workspace)
    environment = dict(os.environ)
    environment["BAO_PARETO_HOME"] = str(workspace)
    if args.reference_table:
        from analysis.imports import load_reference_table
        from dashboard.data import REFERENCE_TABLE_ENV

        table = Path(args.reference_table).resolve()
        load_reference_table(table)  # a bad table fails here, in one line, not in the page
        environment[REFERENCE_TABLE_ENV] = str(table)
    else:
        environment.pop("BAO_PARETO_REFERENCE_TABLE", None)
    _check_port(args.host, args.port)
    # Streamlit would otherwise try to phone home and watch files; neither helps a user.
    environment.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    command_line = [
        sys.executable, "-m", "streamlit", "run", str(APP),
        "--server.address", args.host,
        "--server.port", str(args.port),
        "--server.headless", "true",
        "--server.fileWatcherType", "none",
        "--server.runOnSave", "false",
        "--browser.gatherUsageStats", "false",
        "--client.toolbarMode", "viewer",
        "--global.developmentMode", "false",
    ]  # fmt: skip
    shown_host = "localhost" if args.host == "127.0.0.1" else args.host
    print(
        f"bao-pareto dashboard: http://{shown_host}:{args.port}  (workspace {workspace}; "
        "Ctrl+C stops it)",
        flush=True,
    )
    # The server replaces this process: signals reach it directly and nothing is orphaned.
    os.execve(sys.executable, command_line, environment)


def _existing_workspace(option: str | None) -> Path:
    """The workspace to browse, which must exist: a dashboard shows what sweeps wrote, so a
    missing folder is a typo (or the wrong machine), and making it would hide that."""
    from bao.configuration import ConfigError
    from bao.tracking import resolve_workspace, workspace_path

    chosen = workspace_path(option)
    if not chosen.is_dir():
        what = "is not a folder" if chosen.exists() else "does not exist"
        raise ConfigError(
            f"workspace {str(chosen)!r} {what}",
            fix="pass --workspace DIR with the folder your sweeps wrote (bao-pareto sweep "
            "... --workspace DIR), or set BAO_PARETO_HOME",
        )
    return resolve_workspace(chosen)  # checked for writing: registering variants writes


def _check_port(host: str, port: int) -> None:
    from bao.configuration import ConfigError

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        # As the server will: connections of a stopped server lingering in TIME_WAIT must not
        # count as busy, a listening socket still does.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise ConfigError(
                f"cannot listen on {host}:{port} ({error.strerror or error})",
                value=port,
                fix="choose another --port, or stop what is using it",
            ) from None
