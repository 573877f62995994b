"""The sweep's MLflow calls, made to outlast an MLflow outage.

A sweep runs for days; its tracking server restarts, its SQLite database is locked by a
backup, its artifact store is a network mount that goes away. Optuna's storage holds what
the sweep needs to go on (parameters, values, states), so an MLflow outage must neither stop
the trials nor lose what they would have written. :class:`Tracker` wraps the runner's client:

- every call is retried with exponential backoff while it fails for a reason that can pass
  (a refused connection, a locked database, an unwritable artifact folder), for up to
  ``patience`` seconds; errors MLflow gives for a bad request (an unknown run, an invalid
  value) are raised at once;
- a *write* (tags, metrics, params, a run's end, an artifact file) that still fails is kept
  in the sweep's outbox, ``sweeps/<name>/mlflow-outbox.jsonl`` (one JSON record per line,
  flushed and fsynced), and replayed in order once MLflow answers again: by this process
  while it runs, else by the next ``sweep`` or ``worker`` of the sweep. While the outbox is
  not empty, later writes queue behind it, so a run is never closed before its metrics land;
- a *read*, or a run that must be created now, raises :class:`TrackingUnavailableError`
  after ``patience``; the runner fails that trial with reason ``tracking`` and retries it.

While MLflow is known to be down (:attr:`Tracker.available` is false), the runner starts no
new trial; the running ones go on.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from bao.errors import first_line

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

T = TypeVar("T")

FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0
REPLAY_EVERY_S = 5.0
"""While writes wait, MLflow is tried again this often (each try may itself take minutes:
MLflow's HTTP client retries on its own)."""
LOCK_TIMEOUT_S = 600.0
# MLflow's codes for a request that is wrong, not for a store that is away: retrying these
# cannot help.
PERMANENT_ERROR_CODES = frozenset(
    {
        "INVALID_PARAMETER_VALUE",
        "RESOURCE_DOES_NOT_EXIST",
        "RESOURCE_ALREADY_EXISTS",
        "INVALID_STATE",
        "BAD_REQUEST",
        "PERMISSION_DENIED",
        "UNAUTHENTICATED",
        "ENDPOINT_NOT_FOUND",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "RESOURCE_CONFLICT",
        "NOT_IMPLEMENTED",
        "CUSTOMER_UNAUTHORIZED",
        "FEATURE_DISABLED",
        "MALFORMED_REQUEST",
    }
)


class TrackingUnavailableError(Exception):
    """MLflow did not answer a call for ``patience`` seconds."""

    def __init__(self, what: str, patience: float, error: BaseException) -> None:
        super().__init__(
            f"MLflow did not answer {what} for {patience:g} s (tracking_patience): "
            f"{first_line(error)}"
        )


def is_transient(error: BaseException) -> bool:
    """Whether ``error`` may pass by itself (an outage), as opposed to a bad request."""
    from mlflow.exceptions import MlflowException

    if isinstance(error, MlflowException):
        return error.error_code not in PERMANENT_ERROR_CODES
    if isinstance(error, OSError):  # connections (requests' too), artifact folders, disks
        return True
    try:
        from sqlalchemy.exc import DBAPIError
    except ImportError:
        return False
    return isinstance(error, DBAPIError)  # a locked or unreachable database


class Tracker:
    """An MLflow client for the sweep's runner with retries, an outbox and a health flag."""

    def __init__(self, client: MlflowClient, outbox: Path, patience: float) -> None:
        self.client = client
        self.outbox = outbox
        self.patience = patience
        self._lock = threading.RLock()
        self.available = True
        self._down_since: float | None = None
        self._last_replay = 0.0

    # ---------------------------------------------------------------------------- calls

    def call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)``, retried while it fails transiently, up to ``patience``.

        Raises :class:`TrackingUnavailableError` when the patience runs out, and the call's
        own error when it is not transient.
        """
        deadline = time.monotonic() + self.patience
        backoff = FIRST_BACKOFF_S
        while True:
            try:
                result = fn(*args, **kwargs)
            except Exception as error:
                if not is_transient(error):
                    raise
                if time.monotonic() + backoff > deadline:
                    self._mark_down(what, error)
                    raise TrackingUnavailableError(what, self.patience, error) from None
                log.debug("MLflow %s failed (%s); retrying", what, first_line(error))
                time.sleep(backoff)
                backoff = min(2 * backoff, MAX_BACKOFF_S)
                continue
            self._mark_up()
            return result

    # ---------------------------------------------------------------------------- writes

    def set_tag(self, run_id: str, key: str, value: str) -> None:
        self._write({"op": "set_tag", "run_id": run_id, "key": key, "value": value})

    def set_terminated(self, run_id: str, status: str) -> None:
        # The end time is taken now: a run closed from the outbox hours later still ends
        # when its trial did.
        end_time = int(time.time() * 1000)
        self._write(
            {"op": "set_terminated", "run_id": run_id, "status": status, "end_time": end_time}
        )

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int = 0) -> None:
        """Finite values only (MLflow cannot keep NaN across every store)."""
        now = int(time.time() * 1000)
        rows = [[key, float(value), now, step] for key, value in metrics.items()]
        for start in range(0, len(rows), 1000):  # MLflow's per-request limit
            chunk = rows[start : start + 1000]
            self._write({"op": "log_metrics", "run_id": run_id, "metrics": chunk})

    def log_params(self, run_id: str, params: dict[str, Any]) -> None:
        items = [[key, str(value)[:6000]] for key, value in params.items()]
        for start in range(0, len(items), 100):  # MLflow's per-request limit
            chunk = items[start : start + 100]
            self._write({"op": "log_params", "run_id": run_id, "params": chunk})

    def log_artifact(self, run_id: str, path: Path, artifact_path: str | None = None) -> None:
        """``path`` must outlive the call: an outage replays it from there later."""
        record = {"op": "log_artifact", "run_id": run_id, "path": str(path)}
        self._write({**record, "artifact_path": artifact_path})

    # ---------------------------------------------------------------------------- outbox

    @property
    def has_pending(self) -> bool:
        """Whether writes (of any process of the sweep) wait in the outbox: one ``stat``."""
        try:
            return self.outbox.stat().st_size > 0
        except FileNotFoundError:
            return False

    @property
    def pending(self) -> int:
        """Writes waiting in the outbox (from any process of the sweep)."""
        with self._lock:
            return len(self._read_outbox())

    def replay(self) -> int:
        """Writes what the outbox holds, in order, until one fails; the number left.

        Never raises: a lock held too long or a disk error leaves the outbox for later.
        """
        from filelock import Timeout

        with self._lock:
            self._last_replay = time.monotonic()
            if not self.has_pending:
                return 0
            try:
                with self._file_lock():
                    return self._replay_locked()
            except (Timeout, OSError) as error:
                log.warning("MLflow outbox %s not replayed now: %s", self.outbox, error)
                return max(1, self.pending)

    def _file_lock(self) -> Any:
        from filelock import FileLock

        return FileLock(str(self.outbox) + ".lock", timeout=LOCK_TIMEOUT_S)

    def _replay_locked(self) -> int:
        """Replays under the file lock (held by the caller); the number left."""
        records, torn = self._read_outbox_checked()
        done = 0
        for record in records:
            try:
                self._apply(record)
            except Exception as error:
                if is_transient(error):  # still away: the rest waits behind it
                    self._mark_down("replay", error)
                    break
                # Refused for good (the run was deleted meanwhile, a value MLflow
                # rejects): kept, it would hold every later write back forever.
                log.error("dropping MLflow write %s: %s", record, first_line(error))
            done += 1
        left = records[done:]
        if done or torn:
            self._rewrite(left)
            log.info("wrote %d kept MLflow write(s); %d left", done, len(left))
        if not left:
            self._mark_up()
        return len(left)

    def probe(self) -> bool:
        """Whether MLflow answers now, replaying the outbox first when it holds anything.

        Tried at most every ``REPLAY_EVERY_S`` seconds while MLflow is away; never raises.
        """
        if self.available and not self.has_pending:
            return True
        if time.monotonic() - self._last_replay < REPLAY_EVERY_S:
            return False
        if self.replay():
            return False
        if self.available:
            return True
        try:
            self.client.search_experiments(max_results=1)
        except Exception as error:
            self._mark_down("a probe", error)
            return False
        self._mark_up()
        return True

    def _write(self, record: dict[str, Any]) -> None:
        # Behind writes that wait (this process's or another's): a run's end never lands
        # before its metrics. While MLflow is known to be away, no attempt is made here at
        # all; probe() replays the outbox on the runner's loop.
        if not self.available or self.has_pending:
            self._keep(record)
            return
        try:
            self.call(str(record["op"]), self._apply, record)
        except Exception as error:  # kept, whatever the failure: a write is never dropped
            if not isinstance(error, TrackingUnavailableError) and not is_transient(error):
                log.error("MLflow refused %s: %s", record["op"], first_line(error))
                return
            self._keep(record)

    def _keep(self, record: dict[str, Any]) -> None:
        line = json.dumps(record) + "\n"
        first = not self.has_pending
        with self._lock, self._file_lock(), self.outbox.open("a+b") as handle:
            # A line cut short by a crash or a full disk must not swallow this one.
            handle.seek(0, os.SEEK_END)
            if handle.tell():
                handle.seek(-1, os.SEEK_END)
                if handle.read(1) != b"\n":
                    line = "\n" + line
            handle.write(line.encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
        if first:
            log.warning(
                "MLflow is unreachable: its writes are kept in %s and written when it answers",
                self.outbox,
            )

    def _read_outbox(self) -> list[dict[str, Any]]:
        return self._read_outbox_checked()[0]

    def _read_outbox_checked(self) -> tuple[list[dict[str, Any]], bool]:
        """The records, and whether a torn line was skipped."""
        try:
            lines = self.outbox.read_text(encoding="utf-8", errors="replace").splitlines()
        except FileNotFoundError:
            return [], False
        records, torn = [], False
        for line in lines:
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:  # the tail of a write cut by a crash
                log.warning("skipping a torn line of %s: %r", self.outbox, line[:200])
                torn = True
        return records, torn

    def _rewrite(self, records: list[dict[str, Any]]) -> None:
        from sweep.storage import write_atomically

        if not records:
            self.outbox.unlink(missing_ok=True)
            return
        write_atomically(self.outbox, "".join(json.dumps(r) + "\n" for r in records))

    def _apply(self, record: dict[str, Any]) -> None:
        from mlflow.entities import Metric, Param

        op, run_id = record["op"], record["run_id"]
        if op == "set_tag":
            self.client.set_tag(run_id, record["key"], record["value"])
        elif op == "set_terminated":
            self.client.set_terminated(run_id, record["status"], record["end_time"])
        elif op == "log_metrics":
            metrics = [Metric(k, v, ts, step) for k, v, ts, step in record["metrics"]]
            self.client.log_batch(run_id, metrics=metrics)
        elif op == "log_params":
            self.client.log_batch(run_id, params=[Param(k, v) for k, v in record["params"]])
        elif op == "log_artifact":
            path = record["path"]
            if not Path(path).exists():  # removed since; nothing left to write
                log.warning("artifact %s of run %s is gone; not logged", path, run_id)
                return
            self.client.log_artifact(run_id, path, artifact_path=record["artifact_path"])
        else:
            raise ValueError(f"unknown outbox operation {op!r} in {self.outbox}")

    # ---------------------------------------------------------------------------- health

    def _mark_down(self, what: str, error: BaseException) -> None:
        if self.available:
            log.warning("MLflow unreachable (%s: %s); no new trial starts", what, first_line(error))
            self._down_since = time.monotonic()
        self.available = False

    def _mark_up(self) -> None:
        if not self.available:
            down = time.monotonic() - (self._down_since or time.monotonic())
            log.warning("MLflow answers again after %.0f s", down)
        self.available = True
