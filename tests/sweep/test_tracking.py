"""The sweep's MLflow tracker: retries, the outbox and its replay, against a client that can
be taken down and brought back (whole outages against a real server are in test_faults.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, RESOURCE_DOES_NOT_EXIST

from bao.records import OUTBOX_FILE as OUTBOX
from sweep.tracking import Tracker, TrackingUnavailableError, is_transient


class FlakyClient:
    """Records the MLflow calls it is given; raises ``outage`` while one is set."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.outage: Exception | None = None
        self.fail_next = 0

    def _do(self, *call: Any) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise ConnectionRefusedError("connection refused")
        if self.outage is not None:
            raise self.outage
        self.calls.append(call)

    def set_tag(self, run_id: str, key: str, value: str) -> None:
        self._do("set_tag", run_id, key, value)

    def set_terminated(self, run_id: str, status: str, end_time: int) -> None:
        self._do("set_terminated", run_id, status, end_time)

    def log_batch(self, run_id: str, metrics: Any = (), params: Any = ()) -> None:
        metric_rows = [(m.key, m.value, m.step) for m in metrics]
        self._do("log_batch", run_id, metric_rows, [(p.key, p.value) for p in params])

    def log_artifact(self, run_id: str, path: str, artifact_path: str | None = None) -> None:
        self._do("log_artifact", run_id, Path(path).name, artifact_path)

    def search_experiments(self, max_results: int) -> list[Any]:
        self._do("search_experiments")
        return []


@pytest.fixture
def client() -> FlakyClient:
    return FlakyClient()


def tracker(client: FlakyClient, folder: Path, patience: float = 0.1) -> Tracker:
    return Tracker(client, folder / OUTBOX, patience)  # type: ignore[arg-type]


def test_a_short_failure_is_retried(client: FlakyClient, tmp_path: Path) -> None:
    client.fail_next = 2
    sink = tracker(client, tmp_path, patience=5)
    sink.set_tag("r1", "k", "v")
    assert client.calls == [("set_tag", "r1", "k", "v")]
    assert not (tmp_path / OUTBOX).exists()
    assert sink.available


def test_writes_during_an_outage_are_kept_in_order_and_replayed(
    client: FlakyClient, tmp_path: Path
) -> None:
    sink = tracker(client, tmp_path)
    client.outage = OSError("artifact store unmounted")
    (tmp_path / "run.log").write_text("log")
    sink.log_artifact("r1", tmp_path / "run.log", "logs")
    assert not sink.available
    sink.log_metrics("r1", {"f1": 0.5})  # queued behind the kept write, not tried alone
    sink.set_terminated("r1", "FINISHED")
    kept = [json.loads(line) for line in (tmp_path / OUTBOX).read_text().splitlines()]
    assert [r["op"] for r in kept] == ["log_artifact", "log_metrics", "set_terminated"]
    assert client.calls == []
    # Another process of the sweep finds the outbox and writes it, in order.
    other = FlakyClient()
    assert tracker(other, tmp_path).replay() == 0
    assert [call[0] for call in other.calls] == ["log_artifact", "log_batch", "set_terminated"]
    assert other.calls[1] == ("log_batch", "r1", [("f1", 0.5, 0)], [])
    assert other.calls[2][3] == kept[2]["end_time"]  # the run ends when the trial did
    assert not (tmp_path / OUTBOX).exists()


def test_replay_stops_at_the_first_write_that_still_fails(
    client: FlakyClient, tmp_path: Path
) -> None:
    sink = tracker(client, tmp_path)
    client.outage = ConnectionRefusedError("refused")
    sink.set_tag("r1", "a", "1")
    sink.set_tag("r1", "b", "2")
    assert sink.replay() == 2
    assert not sink.probe()
    client.outage = None
    client.fail_next = 1  # the first replayed write fails once more
    assert sink.replay() == 2
    assert sink.replay() == 0
    assert client.calls == [("set_tag", "r1", "a", "1"), ("set_tag", "r1", "b", "2")]
    assert sink.available
    assert sink.probe()


def test_a_refused_write_is_dropped_not_kept_forever(
    client: FlakyClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sink = tracker(client, tmp_path)
    client.outage = ConnectionRefusedError("refused")
    sink.set_tag("deleted-run", "a", "1")
    sink.set_tag("r2", "b", "2")

    def refuse_deleted(*call: Any) -> None:
        if call[1] == "deleted-run":
            raise MlflowException("run not found", error_code=RESOURCE_DOES_NOT_EXIST)
        client.calls.append(call)

    client.outage = None
    client._do = refuse_deleted  # type: ignore[method-assign]
    assert sink.replay() == 0
    assert client.calls == [("set_tag", "r2", "b", "2")]
    assert "dropping MLflow write" in caplog.text


def test_calls_that_cannot_wait_raise_after_patience(client: FlakyClient, tmp_path: Path) -> None:
    sink = tracker(client, tmp_path, patience=0.1)
    client.outage = ConnectionRefusedError("refused")
    with pytest.raises(TrackingUnavailableError, match=r"did not answer a read for 0\.1 s"):
        sink.call("a read", client.search_experiments, max_results=1)
    client.outage = MlflowException("bad value", error_code=INVALID_PARAMETER_VALUE)
    with pytest.raises(MlflowException, match="bad value"):  # a bad request: at once
        sink.call("a read", client.search_experiments, max_results=1)


def test_what_counts_as_an_outage() -> None:
    assert is_transient(ConnectionRefusedError())
    assert is_transient(NotADirectoryError())
    assert is_transient(MlflowException("database is locked"))  # INTERNAL_ERROR
    assert not is_transient(MlflowException("x", error_code=RESOURCE_DOES_NOT_EXIST))
    assert not is_transient(ValueError("a bug, not an outage"))


def test_a_torn_last_line_is_skipped(client: FlakyClient, tmp_path: Path) -> None:
    record = {"op": "set_tag", "run_id": "r1", "key": "k", "value": "v"}
    (tmp_path / OUTBOX).write_text(json.dumps(record) + "\n" + '{"op": "set_t')
    assert tracker(client, tmp_path).replay() == 0
    assert client.calls == [("set_tag", "r1", "k", "v")]


def test_a_write_kept_during_another_process_replay_is_not_lost(
    client: FlakyClient, tmp_path: Path
) -> None:
    import threading
    import time

    replaying = tracker(client, tmp_path)
    client.outage = ConnectionRefusedError("refused")
    replaying.set_tag("r1", "a", "1")
    replaying.set_tag("r1", "b", "2")
    client.outage = None
    record = client._do

    def slow(*call: Any) -> None:  # a replay that takes a while, as against a slow server
        time.sleep(0.3)
        record(*call)

    client._do = slow  # type: ignore[method-assign]
    other_client = FlakyClient()
    other = tracker(other_client, tmp_path)  # a worker of the same sweep
    thread = threading.Thread(target=replaying.replay)
    thread.start()
    time.sleep(0.1)
    other.set_tag("r2", "c", "3")  # waits behind the replay, never tried on its own
    thread.join()
    assert client.calls == [("set_tag", "r1", "a", "1"), ("set_tag", "r1", "b", "2")]
    assert other_client.calls == []
    kept = [json.loads(line) for line in (tmp_path / OUTBOX).read_text().splitlines()]
    assert [(r["run_id"], r["key"]) for r in kept] == [("r2", "c")]


def test_a_write_after_a_torn_tail_keeps_its_own_line(client: FlakyClient, tmp_path: Path) -> None:
    (tmp_path / OUTBOX).write_text('{"op": "set_t')  # cut short, no newline
    sink = tracker(client, tmp_path)
    sink.set_tag("r1", "k", "v")  # queued behind the (unreadable) waiting line
    assert client.calls == []
    assert sink.replay() == 0
    assert client.calls == [("set_tag", "r1", "k", "v")]
    assert not (tmp_path / OUTBOX).exists()
