"""A fake OpenAI-compatible server on localhost: what SGLang or vLLM would be to the gyms.

It serves ``POST /v1/chat/completions`` and ``GET /v1/models`` over real HTTP (a threading
server from the standard library, started on a free port inside the test), so the client is
tested through the ``openai`` package, its connection pool and its timeouts. What it answers
is decided by a ``responder``: a function of the request body that returns a :class:`Script`
step (a reply text, an HTTP error, a delay, or a dropped connection).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODELS = ("user-model", "judge-model")


@dataclass
class Script:
    """One answer of the fake server."""

    text: str | None = None
    """The assistant message's content."""
    status: int = 200
    """An HTTP status; not 200 sends an OpenAI-style error body."""
    delay: float = 0.0
    """Seconds to wait before answering (longer than the client's timeout: a timeout)."""
    drop: bool = False
    """Close the connection without an answer."""
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] | str | None = None
    """Send this as the whole response body (a completion of the wrong shape, or text that
    is not JSON at all) with status 200, instead of a proper completion."""


Responder = Callable[[dict[str, Any]], Script]


class FakeOpenAI:
    """The server, its request log and its concurrency high-water mark."""

    def __init__(self, responder: Responder) -> None:
        self.responder = responder
        self.requests: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.in_flight_by_model: dict[str, int] = {}
        self.max_in_flight_by_model: dict[str, int] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def start(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def completions(self, model: str | None = None) -> list[dict[str, Any]]:
        return [r for r in self.requests if model is None or r.get("model") == model]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out as two writes; with Nagle's algorithm on, the second
            # waits for a delayed ACK (~40 ms a request), which would be measured as the
            # client's cost.
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

            def _send(
                self, status: int, body: dict[str, Any] | str, headers: dict[str, str]
            ) -> None:
                data = (body if isinstance(body, str) else json.dumps(body)).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path.rstrip("/") != "/v1/models":
                    self._send(404, {"error": {"message": "not found"}}, {})
                    return
                models = [{"id": name, "object": "model", "owned_by": "fake"} for name in MODELS]
                self._send(200, {"object": "list", "data": models}, {})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                model = str(body.get("model"))
                with fake._lock:
                    fake.requests.append(body)
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                    now = fake.in_flight_by_model.get(model, 0) + 1
                    fake.in_flight_by_model[model] = now
                    fake.max_in_flight_by_model[model] = max(
                        fake.max_in_flight_by_model.get(model, 0), now
                    )
                try:
                    script = fake.responder(body)
                    if script.delay:
                        time.sleep(script.delay)
                    if script.drop:
                        self.close_connection = True
                        self.connection.shutdown(2)
                        return
                    if script.status != 200:
                        error = {"message": f"fake error {script.status}", "type": "fake"}
                        self._send(script.status, {"error": error}, script.headers)
                        return
                    if script.body is not None:
                        self._send(200, script.body, script.headers)
                        return
                    self._send(200, _completion(body, script.text or ""), script.headers)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up first (a timeout test)
                finally:
                    with fake._lock:
                        fake.in_flight -= 1
                        fake.in_flight_by_model[model] -= 1

        return Handler


def _completion(request: dict[str, Any], text: str) -> dict[str, Any]:
    prompt_words = sum(len(str(m.get("content", "")).split()) for m in request["messages"])
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.get("model", ""),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt_words,
            "completion_tokens": len(text.split()),
            "total_tokens": prompt_words + len(text.split()),
        },
    }


@contextmanager
def fake_openai(responder: Responder) -> Iterator[FakeOpenAI]:
    server = FakeOpenAI(responder).start()
    try:
        yield server
    finally:
        server.stop()


# ----------------------------------------------------------------- a rule-based user


def system_text(request: dict[str, Any]) -> str:
    return str(request["messages"][0]["content"])


def user_text(request: dict[str, Any]) -> str:
    return str(request["messages"][-1]["content"])


def _words(text: str) -> set[str]:
    return {word for word in re.findall(r"[a-z0-9]+", text.lower()) if len(word) > 3}


def rule_based_user(request: dict[str, Any]) -> Script:
    """A deterministic stand-in for the simulated user and the judge of both gyms.

    Questions: ``Yes`` when the question shares a word (longer than 3 letters) with what the
    user knows, ``Maybe`` for a question ending in ``?!``, else ``No``. Telepathy judge: a
    guess is correct when its long words are all in the entity's name (what comes before
    `` - ``). Turtle judge: a statement scores 1 when the story has all its long words, 0.5
    with at least half.
    """
    system, content = system_text(request), user_text(request)
    if system.startswith("You judge a guessing game"):
        hidden = system.split("The hidden thing is: ", 1)[1].split("\n", 1)[0]
        guess = _words(content)
        correct = bool(guess) and guess <= _words(hidden.split(" - ", 1)[0])
        return Script(json.dumps({"correct": correct}))
    if system.startswith("You grade"):
        statements = re.findall(r"^\d+\. (.*)$", system, flags=re.MULTILINE)
        story = _words(content)
        scores = []
        for statement in statements:
            needed = _words(statement)
            share = len(needed & story) / max(1, len(needed))
            scores.append(1 if share == 1 else 0.5 if share >= 0.5 else 0)
        return Script(json.dumps({"scores": scores}))
    if content.endswith("?!"):
        return Script(json.dumps({"reply": "Maybe"}))
    if "You are thinking of this: " not in system and "What really happened:\n" not in system:
        return Script(json.dumps({"reply": "Yes"}))  # a question about nothing (preflight)
    if "You are thinking of this: " in system:  # Telepathy
        known = system.split("You are thinking of this: ", 1)[1].split("\n", 1)[0]
    else:  # Turtle
        known = system.split("What really happened:\n", 1)[1].split("\nAnswer", 1)[0]
    return Script(json.dumps({"reply": "Yes" if _words(content) & _words(known) else "No"}))
