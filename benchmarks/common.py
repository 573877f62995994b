"""What every benchmark shares: the machine it ran on, the results file, the printed table.

Each benchmark prints one or more tables and writes its numbers as JSON to
``benchmarks/results/<name>.json`` (``<name>.quick.json`` for ``--quick`` runs, so a quick
run never overwrites the full one), always with :func:`machine` beside them: numbers
without the machine they came from cannot be compared.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

RESULTS_DIR = Path(__file__).resolve().parent / "results"
PACKAGES = ("numpy", "torch", "optuna", "pymoo", "moocore", "mlflow", "streamlit", "plotly")

console = Console()


def machine() -> dict[str, Any]:
    """CPU model, cores, memory and the versions that move the numbers."""
    cpu = platform.processor() or platform.machine()
    memory_gib: float | None = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory_gib = round(int(line.split()[1]) / 2**20, 1)
                break
    except OSError:
        pass  # not Linux: the platform module's answer stands
    versions: dict[str, str | None] = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": memory_gib,
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "packages": versions,
    }


def machine_line(info: dict[str, Any] | None = None) -> str:
    info = info or machine()
    memory = f", {info['memory_gib']} GiB" if info["memory_gib"] else ""
    return f"{info['cpu']}, {info['cores']} cores{memory}, Python {info['python']}"


def write_results(
    name: str, results: dict[str, Any], *, quick: bool = False, results_dir: Path | None = None
) -> Path:
    """Writes ``results`` with the machine and the time of the run; returns the path.

    ``results_dir`` replaces :data:`RESULTS_DIR` (the tests write into a temporary folder).
    """
    folder = RESULTS_DIR if results_dir is None else Path(results_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (f"{name}.quick.json" if quick else f"{name}.json")
    document = {
        "benchmark": name,
        "quick": quick,
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        **results,
    }
    path.write_text(json.dumps(document, indent=2, default=_jsonable) + "\n")
    return path


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """One rich table; numbers right-aligned, everything else as given."""
    table = Table(title=title, title_justify="left")
    for index, column in enumerate(columns):
        table.add_column(column, justify="left" if index == 0 else "right")
    for row in rows:
        table.add_row(*(_cell(value) for value in row))
    console.print(table)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def timed(work: Callable[[], Any], repeat: int = 1) -> tuple[list[float], Any]:
    """Seconds of each of ``repeat`` calls of ``work``, and the last call's result."""
    times = []
    result = None
    for _ in range(repeat):
        started = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - started)
    return times, result


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))
