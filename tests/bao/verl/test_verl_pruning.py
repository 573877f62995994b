"""A verl-backend trial pruned while verl runs: its validation pass read as it lands, the
trial ended PRUNED, and verl's process (its own session, under ``train``) gone afterwards.

verl's entry point is tests/bao/verl/fake_main_ppo.py in the sweep's ``train`` subprocesses
(fake_verl_site/sitecustomize.py); it validates at step 2 and then keeps running, as a run
that goes on training would, until the pruner stops it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest
import yaml

pytest.importorskip("verl")

from bao.metrics import summarize
from bao.verl import launch
from bao.verl.cpu.chat_tokenizer import build_chat_tokenizer
from bao.verl.evaluation import read_validation_dump
from sweep.cli import main
from tests.sweep.conftest import OBJECTIVES, REPO_ROOT, status_json

pytestmark = [pytest.mark.slow]

SITE = Path(__file__).with_name("fake_verl_site")
THRESHOLD = 0.05


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone but not yet reaped by its parent.
    status = Path(f"/proc/{pid}/status")
    return status.is_file() and "zombie" not in status.read_text()


def _ray_processes(folder: str) -> list[int]:
    """Processes whose command line names ``folder`` (a local Ray's GCS server and raylet)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if folder in command and _alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def test_a_pruned_verl_trial_stops_verl(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    model = build_chat_tokenizer(tmp_path / "model")
    train = {
        "backend": "verl",
        "model": {"path": str(model)},
        "env": {"max_turns": 6},
        "shaping": {"user_lambda": 0.1, "info_seeking": 0.1, "min_turns": 6},
        "tasks": {"n_train": 6, "n_eval": 9},
        "schedule": {"n_gpus_per_node": 1, "total_training_steps": 3, "test_freq": 2},
        "optim": {"train_batch_size": 4, "ppo_mini_batch_size": 2},
        "rollout": {"n": 2, "max_response_length": 2048},
        "workdir": str(tmp_path / "run"),
    }
    (tmp_path / "verl.yaml").write_text(yaml.safe_dump(train))
    sweep = {
        "name": "verlprune",
        "backend": {"kind": "verl", "train_config": "verl.yaml"},
        "search_space": {"shaping.user_lambda": {"type": "float", "low": 0.0, "high": 0.2}},
        "objectives": OBJECTIVES,
        "driver": {"algorithm": "random", "n_trials": 1},
        "pruner": {"kind": "collapse", "min_step": 2, "collapse_threshold": THRESHOLD},
        "trial_timeout": 600,
        "heartbeat_interval": 1,
        "lease": 5,
    }
    config = tmp_path / "verlprune.yaml"
    config.write_text(yaml.safe_dump(sweep))
    pid_file = tmp_path / "verl.pid"
    monkeypatch.setattr(launch, "_local_gpus", lambda: 1)  # this process's preflight
    for name in ("MLFLOW_RUN_ID", "MLFLOW_TRACKING_URI", "RAY_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(SITE), str(REPO_ROOT)]))
    monkeypatch.setenv("BAO_TEST_FAKE_VERL", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # The fake validates at step 2 (test_freq) and then waits, as a long training would; its
    # last step (3) is verl's own final validation, which is never a rung.
    monkeypatch.setenv("FAKE_VERL_MID_VALIDATION", "1")
    monkeypatch.setenv("FAKE_VERL_LINGER_S", "300")
    # Ray's socket paths must stay short: a folder of its own under /tmp.
    ray_dir = tempfile.mkdtemp(prefix="bao-verl-ray-", dir="/tmp")
    monkeypatch.setenv("FAKE_VERL_RAY_DIR", ray_dir)
    monkeypatch.setenv("FAKE_VERL_PID_FILE", str(pid_file))
    workspace = tmp_path / "ws"
    started = time.monotonic()
    assert main(["sweep", str(config), "--workspace", str(workspace), "--json"]) == 0
    assert time.monotonic() - started < 240  # stopped, not waited out
    status = status_json(capsys, "verlprune", workspace)
    (trial,) = status["trials"]
    # What verl validated at step 2, read here from its dump, decides the trial's fate.
    (dump,) = (tmp_path / "run").glob("*/validation/2.jsonl")
    no_answer = summarize(read_validation_dump(dump)[0])["no_answer_rate"]
    assert no_answer >= THRESHOLD
    assert trial["state"] == "PRUNED"
    assert trial["pruned"]["step"] == 2
    assert trial["pruned"]["rule"] == "collapse"
    assert trial["compute_seconds"] > 0
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 30
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _alive(pid), "verl's process outlived its pruned trial"
    while _ray_processes(ray_dir) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert list(Path(ray_dir).glob("session_*")), "the fake's Ray did not start"
    assert not _ray_processes(ray_dir), "the Ray that verl started outlived its pruned trial"
    shutil.rmtree(ray_dir, ignore_errors=True)
    lines = [
        json.loads(line)
        for path in (workspace / "sweeps" / "verlprune" / "trials").glob("*/*/progress.jsonl")
        for line in path.read_text().splitlines()
    ]
    assert [line["step"] for line in lines] == [2]
