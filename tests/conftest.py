"""Shared fixtures: where the UserRL data lives (read from ../shared, never copied)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# CI and local runs use the same deterministic profile: derandomised so a failure reproduces.
settings.register_profile(
    "bao",
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "bao"))


def pytest_configure(config: pytest.Config) -> None:
    # The verl tests skip where the extra is not installed; CI installs it and must not skip.
    if os.environ.get("BAO_PARETO_REQUIRE_VERL"):
        import importlib.util

        if importlib.util.find_spec("verl") is None:
            raise pytest.UsageError(
                "BAO_PARETO_REQUIRE_VERL is set but verl is not installed: "
                'pip install -e ".[verl]" (make install-dev does)'
            )


REPO_ROOT = Path(__file__).resolve().parent.parent
USERRL_DIR = Path(
    os.environ.get("BAO_USERRL_DATA", REPO_ROOT.parent / "shared" / "data" / "userrl")
)
FUNCTION_GYM_DIR = USERRL_DIR / "function_gym"


@pytest.fixture(scope="session")
def userrl_functions_path() -> Path:
    path = FUNCTION_GYM_DIR / "functions_train.json"
    if not path.is_file():
        pytest.skip(f"UserRL data not found at {path} (set BAO_USERRL_DATA)")
    return path


@pytest.fixture(scope="session")
def userrl_parquet_path(userrl_functions_path: Path) -> Path:
    path = userrl_functions_path.parent / "train.parquet"
    if not path.is_file():
        pytest.skip(f"UserRL parquet not found at {path}")
    return path


@pytest.fixture(scope="session")
def sim_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace with two short real simulator sweeps (``tiny-a``, ``tiny-b``), built once
    per session for the dashboard's page and browser tests."""
    from tests.dashboard.workspaces import build_sim_workspace

    return build_sim_workspace(tmp_path_factory.mktemp("sim-workspace"))
