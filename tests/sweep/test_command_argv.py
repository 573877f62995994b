"""The command backend never goes through a shell: parameter values reach the command as
the exact argv items they are, metacharacters and all, and no package spawns a shell."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Final

import pytest

from sweep.cli import main
from tests.sweep.conftest import WriteConfig

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGES: Final = ("bao", "sweep", "analysis", "dashboard")

HOSTILE_VALUES: Final = [
    "$(touch PWNED)",
    "; touch PWNED; rm -rf canary",
    "`touch PWNED`",
    "| touch PWNED",
    "&& touch PWNED",
    "> PWNED",
    "' \" unbalanced 'quotes",
    "line one\ntouch PWNED",
    "{seed}",  # a placeholder's name inside a value is not substituted again
    "{{trial}}",
    "${HOME} ~ * ?",
    "-rf",
    "",
]

# Dumps its argv beside the metrics and writes the two objectives.
DUMP_ARGV = """\
import json, sys
from pathlib import Path
metrics, dumps, trial = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
(dumps / f"trial-{trial}.json").write_text(json.dumps(sys.argv))
Path(metrics).write_text(json.dumps({"f1": 0.0, "f2": 1.0}))
"""


def test_metacharacters_in_parameters_reach_the_command_as_argv_items(
    command_sweep: WriteConfig,
    workspace: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    script = tmp_path / "dump_argv.py"
    script.write_text(DUMP_ARGV)
    dumps = tmp_path / "argv"
    dumps.mkdir()
    cwd = tmp_path / "cwd"
    (cwd / "canary").mkdir(parents=True)
    config = command_sweep(
        backend={
            "kind": "command",
            "argv": [
                "{python}",
                str(script),
                "{metrics_file}",
                str(dumps),
                "{trial}",
                "{evil}",
                "pre {evil} post",
                "{{evil}}",
            ],
            "metrics": ["f1", "f2"],
            "cwd": "cwd",
        },
        search_space={"evil": {"type": "categorical", "choices": HOSTILE_VALUES}},
        driver={"algorithm": "grid", "n_trials": len(HOSTILE_VALUES)},
    )
    code = main(["sweep", str(config), "--workspace", str(workspace), "--json"])
    status = json.loads(capsys.readouterr().out)
    assert code == 0, status
    assert status["complete"] == len(HOSTILE_VALUES), status
    seen = []
    for trial in status["trials"]:
        value = trial["params"]["evil"]
        argv = json.loads((dumps / f"trial-{trial['number']}.json").read_text())
        assert argv[0] == str(script)
        assert argv[2] == str(dumps)
        assert argv[3:] == [str(trial["number"]), value, f"pre {value} post", "{evil}"]
        seen.append(value)
    assert sorted(seen) == sorted(HOSTILE_VALUES)
    # Had any value gone through a shell, it would have left a file or removed the canary.
    assert not list(tmp_path.rglob("PWNED"))
    assert not (Path.cwd() / "PWNED").exists()
    assert (cwd / "canary").is_dir()


# ------------------------------------------------------------------------ static check

SUBPROCESS_FUNCTIONS: Final = {"run", "Popen", "call", "check_call", "check_output"}
SHELL_FUNCTIONS: Final = {
    ("os", "system"),
    ("os", "popen"),
    ("subprocess", "getoutput"),
    ("subprocess", "getstatusoutput"),
    ("asyncio", "create_subprocess_shell"),
    ("pty", "spawn"),
}


def shell_uses(source: str) -> list[str]:
    """Every call in ``source`` that may run a shell: ``shell=`` anything but a literal
    False, and the functions that always use one (called as ``os.system`` or imported by
    name), with their line numbers."""
    tree = ast.parse(source)
    imported: dict[str, tuple[str, str]] = {}
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                if (node.module, alias.name) in SHELL_FUNCTIONS:
                    imported[alias.asname or alias.name] = (node.module, alias.name)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        for keyword in node.keywords:
            literal_false = isinstance(keyword.value, ast.Constant) and keyword.value.value is False
            if keyword.arg == "shell" and not literal_false:
                found.append(f"line {node.lineno}: shell={ast.unparse(keyword.value)}")
            if keyword.arg is None:  # **options could carry shell=True
                name = ast.unparse(node.func)
                if name.split(".")[-1] in SUBPROCESS_FUNCTIONS:
                    found.append(f"line {node.lineno}: {name}(**{ast.unparse(keyword.value)})")
        func = node.func
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            if (func.value.id, func.attr) in SHELL_FUNCTIONS:
                found.append(f"line {node.lineno}: {func.value.id}.{func.attr}")
        elif isinstance(func, ast.Name) and func.id in imported:
            found.append(f"line {node.lineno}: {'.'.join(imported[func.id])} as {func.id}")
    return found


@pytest.mark.parametrize(
    "source",
    [
        "import subprocess\nsubprocess.run('ls', shell=True)",
        "import subprocess\nsubprocess.Popen(cmd, shell=use_shell)",
        "from subprocess import check_output\ncheck_output(cmd, shell=1)",
        "import subprocess\nsubprocess.run(cmd, **options)",
        "import os\nos.system('ls')",
        "import os\nos.popen('ls').read()",
        "from os import system as run_it\nrun_it('ls')",
        "import subprocess\nsubprocess.getoutput('ls')",
    ],
)
def test_the_static_check_finds_shells(source: str) -> None:
    assert shell_uses(source)


def test_the_static_check_accepts_argv_lists() -> None:
    source = (
        "import subprocess, os\n"
        "subprocess.run(['ls', '-l'], check=True, shell=False)\n"
        "subprocess.Popen(argv, cwd=folder, env=env)\n"
        "os.execve(exe, argv, env)\n"
    )
    assert shell_uses(source) == []


def test_no_package_runs_a_shell() -> None:
    offenders = {}
    files = [p for package in PACKAGES for p in sorted((REPO_ROOT / package).rglob("*.py"))]
    assert len(files) > 40  # the packages are there
    for path in files:
        found = shell_uses(path.read_text(encoding="utf-8"))
        if found:
            offenders[str(path.relative_to(REPO_ROOT))] = found
    assert not offenders, offenders
