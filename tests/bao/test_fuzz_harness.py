"""benchmarks/fuzz_expressions.py: its checks catch what they are for, and a bounded atheris
run over the parser and both evaluators finds nothing."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from bao import expressions
from bao.expressions import BinOp, Var
from benchmarks import fuzz_expressions as harness

HARNESS = Path(harness.__file__).resolve()
RUNS = 50_000
"""A few seconds of fuzzing: a smoke run of the harness, not a search (see its docstring)."""


@pytest.fixture(autouse=True)
def _loaded() -> None:
    harness.load()


def test_the_checks_pass_on_good_and_bad_rules() -> None:
    grid = [[1.0, 2.0, 3.0, 4.0], [0.0, -1.0, math.nan, 1e308]]
    for text in ("a + b * c ** d", "(a - b) / (c - d)", "9**9**9**9", "", "a +", "__import__"):
        harness.check_input(text, grid)


def test_the_checks_flag_an_exception_other_than_rule_syntax_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def crashes(text: str) -> expressions.Node:
        raise ValueError(f"invalid literal for int(): {text!r}")

    monkeypatch.setattr(expressions, "parse_rule", crashes)
    with pytest.raises(ValueError, match="invalid literal"):
        harness.check_input("a", [[1.0, 1.0, 1.0, 1.0]])


def test_the_checks_flag_a_parser_that_runs_the_text(monkeypatch: pytest.MonkeyPatch) -> None:
    def evaluates(text: str) -> expressions.Node:
        eval(text)  # the hole the guard exists for
        return Var(0)

    monkeypatch.setattr(expressions, "parse_rule", evaluates)
    with pytest.raises(harness.CodeExecuted):
        harness.check_input("1 + 1", [[1.0, 1.0, 1.0, 1.0]])


def test_the_checks_flag_evaluators_that_disagree(monkeypatch: pytest.MonkeyPatch) -> None:
    real = expressions.evaluate

    def off_by_one(node: expressions.Node, point: list[float]) -> float:
        return real(node, point) + 1.0

    monkeypatch.setattr(expressions, "evaluate", off_by_one)
    with pytest.raises(AssertionError):
        harness.check_input("a + b", [[1.0, 2.0, 3.0, 4.0]])


def test_the_checks_flag_a_rule_python_reads_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    # A parser that made '-' right-associative would read "a - b - c" as a - (b - c).
    monkeypatch.setattr(
        expressions, "parse_rule", lambda text: BinOp("-", Var(0), BinOp("-", Var(1), Var(2)))
    )
    with pytest.raises(AssertionError):
        harness.check_input("a - b - c", [[1.0, 2.0, 3.0, 4.0]])


@pytest.mark.slow
def test_a_bounded_atheris_run_finds_nothing(tmp_path: Path) -> None:
    pytest.importorskip("atheris", reason="atheris is not installed (pip install atheris)")
    result = subprocess.run(
        [
            sys.executable,
            str(HARNESS),
            f"-atheris_runs={RUNS}",
            "-timeout=10",  # libFuzzer's per-input limit: a hang is reported as a crash
            "-max_len=2048",
            f"-artifact_prefix={tmp_path}/",
            "-seed=1",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert f"Done {RUNS} in" in output, output[-2000:]
    assert not list(tmp_path.glob("crash-*"))
    assert not list(tmp_path.glob("timeout-*"))
