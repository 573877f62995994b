"""The simulated user and the judge of the LLM-user gyms, behind an OpenAI-compatible endpoint.

Telepathy-Gym and Turtle-Gym need a language model that plays the user (it answers the
agent's yes/no questions about a hidden entity or story) and one that judges the agent's
answers. The BAO paper trains against Qwen3-8B served next to the trainer and evaluates with
another model, so the two roles are configured separately (:class:`UserSimulatorSettings`).
Any server speaking the OpenAI chat-completions protocol works: SGLang, vLLM, a hosted API.

What one request goes through (:meth:`ChatJSONClient.request`):

1. the response cache (:class:`ResponseCache`, SQLite), keyed by the model, the messages and
   every sampling setting, so a re-evaluation costs nothing and gets the same replies;
2. a concurrency limit per endpoint and process (a semaphore), so a batch of episodes does
   not flood the server;
3. the request itself with a timeout; connection errors, timeouts, 408/409/429 and 5xx
   replies are retried with exponential backoff and jitter (``Retry-After`` is honoured);
4. strict parsing: the reply must be one JSON object with exactly the fields the gym asked
   for (an empty ``<think>`` block before it, which Qwen3 templates emit, is allowed). A
   malformed reply is asked again like a transport failure, and never cached.

When every attempt fails, :class:`UserSimulatorError` is raised; the gyms turn it into a turn
the user could not answer (``user_unavailable``, ``answer_unjudged``), so an outage degrades a
trial's episodes, and shows in its metrics, instead of crashing the trial.

The prompts are the project's own; the reply formats are in the gyms' modules.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from bao.errors import BaoError, first_line

log = logging.getLogger(__name__)

T = TypeVar("T")

CACHE_FORMAT: Final = 1
"""Part of every cache key: bumped when the prompts change, so old replies are not reused."""
_THINK_BLOCK: Final = re.compile(r"\A\s*<think>.*?</think>", re.DOTALL)
# Status codes worth asking again: the request was fine, the server was not (OpenAI's own
# client retries the same ones).
_RETRIED_STATUS: Final = frozenset({408, 409, 429})


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EndpointSettings(_Section):
    """One model behind an OpenAI-compatible chat-completions endpoint."""

    base_url: str = Field("http://127.0.0.1:30000/v1", min_length=1)
    """The API root, ending in ``/v1`` (SGLang's default port is 30000, vLLM's 8000)."""
    model: str = Field("Qwen/Qwen3-8B", min_length=1)
    """The model name the server serves (``GET /v1/models`` lists them)."""
    api_key_env: str | None = "OPENAI_API_KEY"
    """Environment variable holding the API key; local servers accept any key, and an unset
    variable sends ``EMPTY``."""
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    """Sampling temperature (0: the same question gets the same answer)."""
    max_tokens: int = Field(256, ge=8)
    """Reply length limit; a JSON verdict needs a few dozen tokens."""
    timeout_s: float = Field(60.0, gt=0.0)
    """Seconds one request may take before it counts as failed."""
    max_attempts: int = Field(4, ge=1, le=20)
    """Tries per request (transport failures and malformed replies together)."""
    backoff_s: float = Field(1.0, ge=0.0)
    """Wait before the second try, doubled for each further one (with jitter)."""
    max_backoff_s: float = Field(30.0, ge=0.0)
    """Longest wait between tries."""
    concurrency: int = Field(32, ge=1)
    """Requests in flight at once to this endpoint, per process."""
    circuit_failures: int = Field(3, ge=1)
    """Calls in a row that got no usable reply before the endpoint counts as down: further
    calls then fail at once, without a request, for ``circuit_cooldown_s`` (an outage costs
    episodes seconds, not ``max_attempts`` timeouts per turn)."""
    circuit_cooldown_s: float = Field(30.0, ge=0.0)
    """How long a down endpoint is not asked; then one call tries it again."""
    json_mode: bool = False
    """Send ``response_format: {type: json_object}`` (SGLang and vLLM constrain decoding to
    JSON with it; some servers reject it)."""
    extra_body: dict[str, Any] = Field(default_factory=dict)
    """Extra request fields passed as they are, e.g. ``{chat_template_kwargs:
    {enable_thinking: false}}`` for Qwen3 on SGLang or vLLM."""

    def api_key(self) -> str:
        return (os.environ.get(self.api_key_env) if self.api_key_env else None) or "EMPTY"


class UserSimulatorSettings(_Section):
    """The simulated user (answers questions) and the judge (scores answers), in training and,
    when told apart, in evaluation (the BAO paper trains against Qwen3-8B and evaluates with
    GPT-4o)."""

    simulator: EndpointSettings = EndpointSettings()
    """The model playing the user."""
    judge: EndpointSettings | None = None
    """The model judging answers; ``None`` uses the simulator's endpoint."""
    eval_simulator: EndpointSettings | None = None
    """The user of validation episodes (rows whose ``extra_info.split`` is val or test);
    ``None``: the training one."""
    eval_judge: EndpointSettings | None = None
    """The judge of validation episodes; ``None``: ``eval_simulator`` when it is given, else
    the training judge."""
    cache: bool = True
    """Keep every valid reply in a SQLite cache and reuse it for the same request."""
    cache_path: Path | None = None
    """The cache file; ``None``: ``user-cache.sqlite`` in the workspace."""

    def judge_endpoint(self) -> EndpointSettings:
        return self.judge or self.simulator

    def for_evaluation(self) -> UserSimulatorSettings:
        """The settings validation episodes use: the eval endpoints in place of the others."""
        if self.eval_simulator is None and self.eval_judge is None:
            return self
        simulator = self.eval_simulator or self.simulator
        judge = self.eval_judge or (self.eval_simulator or self.judge_endpoint())
        return self.model_copy(
            update={
                "simulator": simulator,
                "judge": judge,
                "eval_simulator": None,
                "eval_judge": None,
            }
        )


class UserSimulatorError(BaoError):
    """The simulated user or judge gave no usable reply after every attempt."""

    attempts: int = 0
    """Requests sent before giving up (0 while the endpoint's circuit is open)."""
    seconds: float = 0.0
    """Time spent on them, backoff included."""
    usage: tuple[int, int] = (0, 0)
    """Prompt and completion tokens the server billed for them (malformed replies)."""


class MalformedReplyError(ValueError):
    """A reply that is not the JSON object the prompt asked for (raised by parsers)."""


# ------------------------------------------------------------------------------ parsing


def parse_json_object(text: str, fields: Mapping[str, Callable[[Any], T]]) -> dict[str, T]:
    """The reply as a JSON object with exactly ``fields``, each checked by its validator.

    A leading ``<think>...</think>`` block is dropped; anything else around the object (prose,
    code fences, a second object) makes the reply malformed.

    Raises:
        MalformedReplyError: saying what was wrong, with the start of the reply.
    """
    body = _THINK_BLOCK.sub("", text, count=1).strip()
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
        raise MalformedReplyError(f"not a JSON object: {_clip(text)!r}") from None
    if not isinstance(data, dict):
        raise MalformedReplyError(f"expected a JSON object, got {type(data).__name__}")
    if set(data) != set(fields):
        raise MalformedReplyError(
            f"expected the keys {sorted(fields)}, got {sorted(str(key) for key in data)}"
        )
    return {key: check(data[key]) for key, check in fields.items()}


def _clip(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -------------------------------------------------------------------------------- cache


class ResponseCache:
    """Valid replies by request key, in a SQLite file shared by the processes of a workspace.

    Keys cover the model, the messages and the sampling settings (:func:`request_key`), so
    two sweeps asking the same question with the same settings share one reply. A cache that
    cannot be read or written (a full disk, a lock held too long) is logged and bypassed: it
    makes trials cheaper, never fails them.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None
        self._broken = False

    def _open(self) -> sqlite3.Connection:
        if self._connection is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute(
                "CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, model TEXT NOT NULL, "
                "purpose TEXT NOT NULL, reply TEXT NOT NULL, prompt_tokens INTEGER NOT NULL, "
                "completion_tokens INTEGER NOT NULL, created REAL NOT NULL)"
            )
            connection.commit()
            self._connection = connection
        return self._connection

    def get(self, key: str) -> tuple[str, int, int] | None:
        """The cached reply text and its token counts, or None."""
        with self._lock:
            if self._broken:
                return None
            try:
                row = (
                    self._open()
                    .execute(
                        "SELECT reply, prompt_tokens, completion_tokens FROM replies WHERE key = ?",
                        (key,),
                    )
                    .fetchone()
                )
            except (sqlite3.Error, OSError) as error:
                self._give_up(error)
                return None
        return None if row is None else (str(row[0]), int(row[1]), int(row[2]))

    def put(
        self, key: str, *, model: str, purpose: str, reply: str, usage: tuple[int, int]
    ) -> None:
        with self._lock:
            if self._broken:
                return
            try:
                connection = self._open()
                # REPLACE: a row that no longer parses (the parser grew stricter) is
                # overwritten by the reply asked again in its place.
                connection.execute(
                    "INSERT OR REPLACE INTO replies VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (key, model, purpose, reply, usage[0], usage[1], time.time()),
                )
                connection.commit()
            except (sqlite3.Error, OSError) as error:
                self._give_up(error)

    def __len__(self) -> int:
        with self._lock:
            return int(self._open().execute("SELECT COUNT(*) FROM replies").fetchone()[0])

    def _give_up(self, error: Exception) -> None:
        if isinstance(error, sqlite3.OperationalError) and "locked" in str(error):
            # Another process held the lock past the timeout: this lookup or write is
            # skipped, the cache stays in use.
            log.info("user-simulator cache %s is busy (%s); skipped once", self.path, error)
            return
        log.warning(
            "user-simulator cache %s is unusable (%s); going on without it", self.path, error
        )
        self._broken = True

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None


def request_key(endpoint: EndpointSettings, messages: Sequence[Mapping[str, str]]) -> str:
    """The cache key of a request: everything that decides what the model replies."""
    what = {
        "format": CACHE_FORMAT,
        "model": endpoint.model,
        "messages": list(messages),
        "temperature": endpoint.temperature,
        "max_tokens": endpoint.max_tokens,
        "json_mode": endpoint.json_mode,
        "extra_body": endpoint.extra_body,
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()


# ------------------------------------------------------------------------------- client


@dataclass(frozen=True)
class Reply(Generic[T]):
    """A parsed reply and what it cost."""

    value: T
    cached: bool
    attempts: int
    """Requests sent (0 for a cache hit, or for a reply shared with a request in flight)."""
    prompt_tokens: int
    """Tokens billed for this call: every attempt's, malformed ones included; 0 when the
    reply came from the cache or from another caller's request."""
    completion_tokens: int
    seconds: float


@dataclass
class CallStats:
    """What an episode's calls to the user and the judge cost (summed over calls).

    ``cache_hits`` counts the calls answered without a request of their own: from the cache,
    or by the reply to the same request another episode had in flight."""

    calls: int = 0
    cache_hits: int = 0
    requests: int = 0
    failures: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0

    def add(self, reply: Reply[Any]) -> None:
        self.calls += 1
        self.cache_hits += int(reply.cached)
        self.requests += reply.attempts
        self.prompt_tokens += reply.prompt_tokens
        self.completion_tokens += reply.completion_tokens
        self.seconds += reply.seconds

    def add_failure(self, error: UserSimulatorError) -> None:
        self.calls += 1
        self.failures += 1
        self.requests += error.attempts
        self.prompt_tokens += error.usage[0]
        self.completion_tokens += error.usage[1]
        self.seconds += error.seconds

    def as_dict(self) -> dict[str, float]:
        return {
            "user_calls": float(self.calls),
            "user_cache_hits": float(self.cache_hits),
            "user_requests": float(self.requests),
            "user_failures": float(self.failures),
            "user_prompt_tokens": float(self.prompt_tokens),
            "user_completion_tokens": float(self.completion_tokens),
            "user_seconds": self.seconds,
        }


@dataclass
class _Attempt:
    text: str | None = None
    usage: tuple[int, int] = (0, 0)
    error: str = ""
    retry_after: float | None = None
    permanent: bool = False


@dataclass
class ChatJSONClient:
    """Asks one endpoint for JSON verdicts: cached, rate-limited, retried, strictly parsed.

    Thread-safe: the gyms call it from the threads that play episodes. ``sleep`` and ``rng``
    are there for tests (backoff without waiting, jitter without chance).
    """

    endpoint: EndpointSettings
    cache: ResponseCache | None = None
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        self._slots = threading.BoundedSemaphore(self.endpoint.concurrency)
        self._client: Any = None
        self._client_lock = threading.Lock()
        # Requests in flight by cache key: a second caller of the same request waits for the
        # first one's reply instead of asking again (the 8 rollouts of a GRPO group often
        # open with the same question).
        self._in_flight: dict[str, Future[tuple[str, tuple[int, int]]]] = {}
        self._state_lock = threading.Lock()
        self._failures_in_row = 0
        self._down_until = 0.0

    def _openai(self) -> Any:
        with self._client_lock:
            if self._client is None:
                import openai

                # Retries are ours (they also cover malformed replies, and are counted).
                self._client = openai.OpenAI(
                    base_url=self.endpoint.base_url,
                    api_key=self.endpoint.api_key(),
                    timeout=self.endpoint.timeout_s,
                    max_retries=0,
                )
            return self._client

    def request(
        self,
        messages: Sequence[Mapping[str, str]],
        parse: Callable[[str], T],
        *,
        purpose: str,
    ) -> Reply[T]:
        """Asks the model; ``parse`` turns the reply text into a value or raises
        :class:`MalformedReplyError`.

        Raises:
            UserSimulatorError: no valid reply after ``max_attempts`` tries, or a request the
                server refuses for good (a wrong model name, a rejected field).
        """
        started = self.clock()
        key = request_key(self.endpoint, messages)
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                try:
                    value = parse(hit[0])
                except MalformedReplyError:
                    log.warning("a cached %s reply no longer parses; asking again", purpose)
                else:
                    return Reply(value, True, 0, 0, 0, self.clock() - started)
            return self._shared_request(key, messages, parse, purpose, started)
        return self._ask(key, messages, parse, purpose, started)

    def _shared_request(
        self,
        key: str,
        messages: Sequence[Mapping[str, str]],
        parse: Callable[[str], T],
        purpose: str,
        started: float,
    ) -> Reply[T]:
        """With a cache, one request per key at a time: later callers share its reply."""
        mine: Future[tuple[str, tuple[int, int]]] = Future()
        with self._state_lock:
            pending = self._in_flight.setdefault(key, mine)
        if pending is not mine:
            try:
                text, _ = pending.result()
                return Reply(parse(text), True, 0, 0, 0, self.clock() - started)
            except (UserSimulatorError, MalformedReplyError):
                pass  # the first caller failed: ask on our own
            return self._ask(key, messages, parse, purpose, started)
        try:
            reply = self._ask(key, messages, parse, purpose, started, shared=mine)
        except BaseException as error:
            mine.set_exception(error)
            raise
        finally:
            with self._state_lock:
                self._in_flight.pop(key, None)
        return reply

    def _ask(
        self,
        key: str,
        messages: Sequence[Mapping[str, str]],
        parse: Callable[[str], T],
        purpose: str,
        started: float,
        *,
        shared: Future[tuple[str, tuple[int, int]]] | None = None,
    ) -> Reply[T]:
        with self._state_lock:
            down = self.clock() < self._down_until
        if down:
            failure = UserSimulatorError(
                f"{purpose}: model {self.endpoint.model!r} at {self.endpoint.base_url} is "
                f"down ({self.endpoint.circuit_failures} calls in a row got no usable reply); "
                f"not asked again for {self.endpoint.circuit_cooldown_s:g} s",
                fix="check the server (GET /v1/models) and its logs",
            )
            failure.seconds = self.clock() - started
            raise failure
        attempts, problem = 0, ""
        billed = [0, 0]
        for attempt in range(1, self.endpoint.max_attempts + 1):
            attempts = attempt
            outcome = self._send(messages)
            billed[0] += outcome.usage[0]
            billed[1] += outcome.usage[1]
            if outcome.text is not None:
                try:
                    value = parse(outcome.text)
                except MalformedReplyError as error:
                    problem = f"malformed reply ({error})"
                else:
                    if self.cache is not None:
                        self.cache.put(
                            key,
                            model=self.endpoint.model,
                            purpose=purpose,
                            reply=outcome.text,
                            usage=outcome.usage,
                        )
                    if shared is not None:
                        shared.set_result((outcome.text, outcome.usage))
                    self._record(success=True)
                    seconds = self.clock() - started
                    return Reply(value, False, attempt, billed[0], billed[1], seconds)
            else:
                problem = outcome.error
                if outcome.permanent:
                    break
            if attempt < self.endpoint.max_attempts:
                wait = self._backoff(attempt, outcome.retry_after)
                log.info(
                    "%s request to %s failed (%s), try %d of %d in %.1f s",
                    purpose,
                    self.endpoint.base_url,
                    problem,
                    attempt + 1,
                    self.endpoint.max_attempts,
                    wait,
                )
                self.sleep(wait)
        self._record(success=False)
        failure = UserSimulatorError(
            f"{purpose}: model {self.endpoint.model!r} at {self.endpoint.base_url} gave no "
            f"usable reply in {attempts} {'try' if attempts == 1 else 'tries'} ({problem})",
            fix="check the server (GET /v1/models), its load, and user_simulator's timeout_s "
            "and max_attempts",
        )
        failure.attempts, failure.seconds = attempts, self.clock() - started
        failure.usage = (billed[0], billed[1])
        raise failure

    def _record(self, *, success: bool) -> None:
        """The circuit breaker: ``circuit_failures`` failed calls in a row open it."""
        with self._state_lock:
            if success:
                self._failures_in_row = 0
                return
            self._failures_in_row += 1
            if self._failures_in_row >= self.endpoint.circuit_failures:
                self._down_until = self.clock() + self.endpoint.circuit_cooldown_s
                self._failures_in_row = 0
                log.warning(
                    "user-simulator model %r at %s is down; calls fail at once for %g s",
                    self.endpoint.model,
                    self.endpoint.base_url,
                    self.endpoint.circuit_cooldown_s,
                )

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        base = min(self.endpoint.max_backoff_s, self.endpoint.backoff_s * 2.0 ** (attempt - 1))
        wait = base * (0.5 + 0.5 * self.rng.random())  # jitter: replicas do not retry in step
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.endpoint.max_backoff_s))
        return wait

    def _send(self, messages: Sequence[Mapping[str, str]]) -> _Attempt:
        import openai

        options: dict[str, Any] = {
            "model": self.endpoint.model,
            "messages": list(messages),
            "temperature": self.endpoint.temperature,
            "max_tokens": self.endpoint.max_tokens,
        }
        if self.endpoint.json_mode:
            options["response_format"] = {"type": "json_object"}
        if self.endpoint.extra_body:
            options["extra_body"] = dict(self.endpoint.extra_body)
        with self._slots:
            try:
                completion = self._openai().chat.completions.create(**options)
            except openai.APIStatusError as error:
                status = int(error.status_code)
                return _Attempt(
                    error=f"HTTP {status}: {first_line(error)[:160]}",
                    retry_after=_retry_after(error),
                    permanent=status < 500 and status not in _RETRIED_STATUS,
                )
            except openai.APIConnectionError as error:  # timeouts included
                return _Attempt(error=f"{type(error).__name__}: {first_line(error)[:160]}")
            except Exception as error:  # a body the client cannot read (a proxy's error page)
                return _Attempt(error=f"unreadable reply ({type(error).__name__}: {error})"[:200])
        return _read_completion(completion)

    def check_model(self) -> None:
        """Asks the server which models it serves; raises :class:`UserSimulatorError` (one
        line) when it cannot be reached or does not serve ``model``."""
        import openai

        try:
            served = [model.id for model in self._openai().models.list()]
        except openai.OpenAIError as error:
            raise UserSimulatorError(
                f"the user-simulator server at {self.endpoint.base_url} cannot be reached "
                f"({first_line(error)[:160]})",
                fix="start it first (docs/gyms.md) or fix user_simulator.*.base_url",
            ) from None
        if self.endpoint.model not in served:
            raise UserSimulatorError(
                f"the server at {self.endpoint.base_url} does not serve model "
                f"{self.endpoint.model!r} (it serves {served})",
                fix="set user_simulator.*.model to one of those names",
            )
        # One real request with every configured field: a server that rejects one of them
        # (json_mode, extra_body) or a model that does not reply in JSON is found now, not
        # as a run whose every turn went unanswered.
        probe = [
            {"role": "system", "content": PREFLIGHT_PROMPT},
            {"role": "user", "content": "Is water wet?"},
        ]
        try:
            ChatJSONClient(self.endpoint, sleep=self.sleep, rng=self.rng).request(
                probe, _preflight_parse, purpose="preflight"
            )
        except UserSimulatorError as error:
            raise UserSimulatorError(
                f"the user-simulator model {self.endpoint.model!r} does not answer as the gyms "
                f"need: {error.what}",
                fix="check json_mode, extra_body and max_tokens against the server (docs/gyms.md)",
            ) from None


PREFLIGHT_PROMPT: Final = (
    'You answer yes/no questions. Reply with nothing but the JSON object {"reply": "Yes"}, '
    '{"reply": "No"} or {"reply": "Maybe"}.'
)


def _preflight_parse(text: str) -> str:
    reply = parse_json_object(text, {"reply": str})["reply"]
    if reply not in ("Yes", "No", "Maybe"):
        raise MalformedReplyError(f"'reply' must be Yes, No or Maybe, got {reply!r}")
    return reply


def _read_completion(completion: Any) -> _Attempt:
    """The message text and token counts of a chat completion, whatever shape the server
    gave it: a reply without readable content is a failed attempt, never an exception."""
    try:
        choices = getattr(completion, "choices", None)
        message = getattr(choices[0], "message", None) if choices else None
        text = getattr(message, "content", None)
    except (TypeError, IndexError, KeyError, AttributeError):
        text = None
    if not isinstance(text, str):
        return _Attempt(text=None, error="a reply without message content")
    usage = getattr(completion, "usage", None)
    return _Attempt(
        text=text,
        usage=(
            _count(getattr(usage, "prompt_tokens", 0)),
            _count(getattr(usage, "completion_tokens", 0)),
        ),
    )


def _count(value: Any) -> int:
    """A token count as the server sent it; anything but a non-negative integer counts 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _retry_after(error: Any) -> float | None:
    response = getattr(error, "response", None)
    headers = getattr(response, "headers", None) or {}
    try:
        value = headers.get("retry-after")
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


# ---------------------------------------------------------------------------- the pair


@dataclass
class SimulatedUser:
    """The two clients an LLM-user gym asks: the user (questions) and the judge (answers)."""

    simulator: ChatJSONClient
    judge: ChatJSONClient

    @classmethod
    def from_settings(
        cls, settings: UserSimulatorSettings, workspace: Path | None = None
    ) -> SimulatedUser:
        cache = None
        if settings.cache:
            path = settings.cache_path or (workspace or Path.cwd()) / "user-cache.sqlite"
            cache = ResponseCache(path)
        simulator = ChatJSONClient(settings.simulator, cache)
        judge_endpoint = settings.judge_endpoint()
        judge = (
            simulator
            if judge_endpoint == settings.simulator
            else ChatJSONClient(judge_endpoint, cache)
        )
        return cls(simulator=simulator, judge=judge)

    def check(self) -> None:
        """Both endpoints up and serving their models (before a run starts)."""
        self.simulator.check_model()
        if self.judge is not self.simulator:
            self.judge.check_model()


_shared: dict[str, SimulatedUser] = {}
_shared_lock = threading.Lock()


def shared_user(settings: UserSimulatorSettings, workspace: Path | None = None) -> SimulatedUser:
    """One :class:`SimulatedUser` per settings and process: the episodes a process plays share
    its connection pools, concurrency limits and cache connection."""
    key = settings.model_dump_json() + "|" + str(workspace)
    with _shared_lock:
        if key not in _shared:
            _shared[key] = SimulatedUser.from_settings(settings, workspace)
        return _shared[key]
