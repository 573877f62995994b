"""README's commands as a new user runs them after `make demo` (issue: new-user fixes)."""

from __future__ import annotations

import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


def blocks() -> list[tuple[str, str]]:
    """Each code block of the README with the prose paragraph just before it."""
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    found = []
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip().rsplit("\n\n", 1)[-1]
        found.append((before, match.group(1)))
    return found


def test_a_sweep_with_another_driver_is_shown_under_a_new_name() -> None:
    # The demo's sweep exists with TPE: the same name with nsga2 is refused (another study).
    changed = [
        line
        for _, code in blocks()
        for line in code.splitlines()
        if "sweep configs/quickstart.yaml" in line and "driver.algorithm=" in line
    ]
    assert changed
    for line in changed:
        assert "--set name=" in line, line


def test_the_verl_commands_say_they_need_the_verl_extra_and_which_target_installs_it() -> None:
    verl_blocks = [(prose, code) for prose, code in blocks() if "configs/verl/" in code]
    assert verl_blocks
    for prose, code in verl_blocks:
        assert '".[verl]"' in prose, code
        assert "make install-dev" in prose, code
        assert "make demo" in prose, code  # which does not install it
    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    recipe = re.search(r"^\$\(VENV\)/\.installed-dev:.*?(?=^\S)", makefile, re.M | re.S)
    assert recipe is not None
    assert '-e ".[dev,verl]"' in recipe.group(0)
    assert "install-dev: $(VENV)/.installed-dev" in makefile
