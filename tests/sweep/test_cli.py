"""The bao-pareto entry point: dispatch, JSON output, one-line errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sweep.cli import DISPATCH, main


def test_baselines_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["baselines", "--n-tasks", "30", "--seed", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n_tasks"] == 30
    policies = result["policies"]
    assert set(policies) == {"oracle", "random", "guess_every_turn", "never_answer"}
    assert policies["oracle"]["pass_at_u_1"] == 1.0
    assert policies["oracle"]["user_involvement_rate"] == 0.5
    assert policies["never_answer"]["no_answer_rate"] == 1.0
    assert policies["never_answer"]["score"] == 0.0
    assert policies["guess_every_turn"]["user_involvement_rate"] > 0.9


def test_baselines_is_reproducible(capsys: pytest.CaptureFixture[str]) -> None:
    main(["baselines", "--n-tasks", "20", "--json", "--policy", "random"])
    first = capsys.readouterr().out
    main(["baselines", "--n-tasks", "20", "--json", "--policy", "random"])
    assert capsys.readouterr().out == first


def test_baselines_table_explains_its_columns(capsys: pytest.CaptureFixture[str]) -> None:
    # UR, explore and no-ans were explained nowhere (issue: new-user fixes).
    assert main(["baselines", "--n-tasks", "20", "--policy", "oracle"]) == 0
    out = capsys.readouterr().out
    for header, key in (
        ("Score", "score"),
        ("UR", "user_involvement_rate"),
        ("explore", "exploration_ratio"),
        ("no-ans", "no_answer_rate"),
        ("turns", "mean_turns"),
    ):
        assert re.search(rf"^{re.escape(header)}: \S.* \({key}\)$", out, re.MULTILINE), header
    assert re.search(r"^P@U-k: \S", out, re.MULTILINE)


def test_baselines_on_userrl_parquet(
    capsys: pytest.CaptureFixture[str], userrl_parquet_path: Path
) -> None:
    assert (
        main(["baselines", "--tasks", str(userrl_parquet_path), "--json", "--policy", "oracle"])
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert result["n_tasks"] == 460
    assert result["policies"]["oracle"]["score"] == 1.0


def test_bad_input_gives_one_line_and_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "tasks.json"
    bad.write_text(
        json.dumps([{"id": "x", "rule": "a + ", "test_case": [1, 2, 3, 4], "expected_result": 1}])
    )
    assert main(["baselines", "--tasks", str(bad)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1
    for part in ("record 0", "field 'rule'", str(bad)):
        assert part in lines[0]


def test_console_script_runs() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "sweep.cli", "--help"], capture_output=True, text=True, check=True
    )
    for name in DISPATCH:
        assert name in completed.stdout


def test_importing_the_packages_loads_no_heavy_dependency() -> None:
    code = (
        "import sys, bao, sweep, analysis, dashboard, bao.envs, bao.metrics, bao.advantage, "
        "bao.shaping, bao.tasks, sweep.cli\n"
        "heavy = [m for m in ('torch', 'verl', 'streamlit', 'mlflow', 'pyarrow')\n"
        "         if m in sys.modules]\n"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
