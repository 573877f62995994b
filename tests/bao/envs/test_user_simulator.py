"""The user-simulator client against a fake OpenAI-compatible server on localhost."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from bao.envs.user_gyms import parse_user_reply, parse_verdict, rubric_parser
from bao.envs.user_simulator import (
    ChatJSONClient,
    EndpointSettings,
    MalformedReplyError,
    ResponseCache,
    SimulatedUser,
    UserSimulatorError,
    UserSimulatorSettings,
    parse_json_object,
    request_key,
)
from tests.bao.envs.fake_openai import Script, fake_openai

QUESTION = [{"role": "system", "content": "host"}, {"role": "user", "content": "Is it big?"}]


def endpoint(base_url: str, **changes: Any) -> EndpointSettings:
    settings: dict[str, Any] = {
        "base_url": base_url,
        "model": "user-model",
        "timeout_s": 2.0,
        "max_attempts": 3,
        "backoff_s": 0.5,
    }
    return EndpointSettings.model_validate({**settings, **changes})


class Waits:
    """The client's sleep, recorded instead of slept."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.seconds.append(seconds)


def client(base_url: str, cache: ResponseCache | None = None, **changes: Any) -> ChatJSONClient:
    return ChatJSONClient(endpoint(base_url, **changes), cache, sleep=Waits())


def scripted(*steps: Script) -> Any:
    """Answers with ``steps`` in order, then repeats the last one."""
    queue = iter(steps)
    last = [steps[-1]]

    def respond(request: dict[str, Any]) -> Script:
        step = next(queue, None)
        if step is not None:
            last[0] = step
        return last[0]

    return respond


def test_a_reply_is_parsed_and_its_cost_counted() -> None:
    with fake_openai(scripted(Script('{"reply": "Yes"}'))) as server:
        reply = client(server.base_url).request(QUESTION, parse_user_reply, purpose="question")
    assert reply.value == "Yes"
    assert (reply.cached, reply.attempts) == (False, 1)
    assert reply.prompt_tokens > 0
    assert reply.completion_tokens == 2
    sent = server.requests[0]
    assert sent["model"] == "user-model"
    assert sent["messages"] == QUESTION
    assert sent["temperature"] == 0.0
    assert "response_format" not in sent


def test_json_mode_and_extra_body_reach_the_server() -> None:
    with fake_openai(scripted(Script('{"reply": "No"}'))) as server:
        chat = client(
            server.base_url,
            json_mode=True,
            extra_body={"chat_template_kwargs": {"enable_thinking": False}},
        )
        chat.request(QUESTION, parse_user_reply, purpose="question")
    sent = server.requests[0]
    assert sent["response_format"] == {"type": "json_object"}
    assert sent["chat_template_kwargs"] == {"enable_thinking": False}


@pytest.mark.parametrize(
    "text",
    [
        "Yes",  # prose
        '{"reply": "yes"}',  # wrong label
        '{"reply": "Yes", "why": "big"}',  # extra key
        '```json\n{"reply": "Yes"}\n```',  # a fenced block is not the object itself
        '{"reply": "Yes"} {"reply": "No"}',  # two objects
        "[]",
        "",
    ],
)
def test_malformed_replies_are_asked_again(text: str) -> None:
    with fake_openai(scripted(Script(text), Script('{"reply": "Maybe"}'))) as server:
        chat = client(server.base_url)
        reply = chat.request(QUESTION, parse_user_reply, purpose="question")
    assert (reply.value, reply.attempts) == ("Maybe", 2)
    assert len(server.requests) == 2


def test_a_think_block_before_the_object_is_allowed() -> None:
    assert parse_user_reply('<think>\nhmm\n</think>\n\n{"reply": "No"}') == "No"
    with pytest.raises(MalformedReplyError):
        parse_user_reply('Sure! {"reply": "No"}')


def test_every_malformed_reply_ends_in_one_clear_error() -> None:
    with fake_openai(scripted(Script("I think so"))) as server:
        chat = client(server.base_url)
        with pytest.raises(UserSimulatorError) as caught:
            chat.request(QUESTION, parse_user_reply, purpose="telepathy_gym question")
    assert caught.value.attempts == 3
    assert caught.value.usage[1] == 3 * 3  # what the malformed replies were billed
    message = str(caught.value)
    assert "\n" not in message
    assert "telepathy_gym question" in message
    assert "3 tries" in message
    assert "malformed reply" in message
    assert "'user-model'" in message
    assert len(server.requests) == 3


@pytest.mark.parametrize(
    "failure",
    [Script(status=500), Script(status=503), Script(status=429), Script(drop=True)],
    ids=["500", "503", "429", "dropped"],
)
def test_server_failures_are_retried_with_backoff(failure: Script) -> None:
    with fake_openai(scripted(failure, failure, Script('{"correct": true}'))) as server:
        chat = client(server.base_url)
        reply = chat.request(QUESTION, parse_verdict, purpose="judge")
    assert (reply.value, reply.attempts) == (True, 3)
    waits = chat.sleep.seconds  # type: ignore[attr-defined]
    assert len(waits) == 2
    # Exponential with jitter: try n waits between half and all of backoff * 2^(n-1).
    assert 0.25 <= waits[0] <= 0.5
    assert 0.5 <= waits[1] <= 1.0


@pytest.mark.parametrize(
    "body",
    [
        "<html>502 Bad Gateway</html>",  # a proxy's page, labelled JSON
        {"id": "x", "choices": 5},
        {"id": "x", "choices": []},
        {"id": "x", "choices": [{"message": {"role": "assistant", "content": None}}]},
        {"id": "x"},
    ],
    ids=["not-json", "choices-a-number", "no-choices", "no-content", "no-fields"],
)
def test_completions_of_the_wrong_shape_are_failed_attempts(body: Any) -> None:
    with fake_openai(scripted(Script(body=body), Script('{"reply": "No"}'))) as server:
        reply = client(server.base_url).request(QUESTION, parse_user_reply, purpose="q")
    assert (reply.value, reply.attempts) == ("No", 2)


def test_token_counts_of_the_wrong_type_count_zero() -> None:
    odd = {
        "id": "x",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": '{"reply": "Yes"}'}}],
        "usage": {"prompt_tokens": "n/a", "completion_tokens": -3, "total_tokens": 0},
    }
    with fake_openai(scripted(Script(body=odd))) as server:
        reply = client(server.base_url).request(QUESTION, parse_user_reply, purpose="q")
    assert (reply.value, reply.prompt_tokens, reply.completion_tokens) == ("Yes", 0, 0)


def test_deeply_nested_replies_are_malformed_not_a_crash() -> None:
    with pytest.raises(MalformedReplyError):
        parse_user_reply("[" * 100_000 + "]" * 100_000)


def test_an_endpoint_that_keeps_failing_is_left_alone_for_a_while() -> None:
    now = [0.0]
    with fake_openai(scripted(Script(status=503))) as server:
        chat = ChatJSONClient(
            endpoint(server.base_url, max_attempts=2, circuit_failures=2, circuit_cooldown_s=30),
            sleep=Waits(),
            clock=lambda: now[0],
        )
        for _ in range(2):
            with pytest.raises(UserSimulatorError, match="in 2 tries"):
                chat.request(QUESTION, parse_user_reply, purpose="q")
        assert len(server.requests) == 4
        # Down: further calls fail at once, nothing is sent.
        with pytest.raises(UserSimulatorError, match="is down") as caught:
            chat.request(QUESTION, parse_user_reply, purpose="q")
        assert caught.value.attempts == 0
        assert len(server.requests) == 4
        now[0] = 31.0  # the cool-down is over: asked again
        with pytest.raises(UserSimulatorError, match="in 2 tries"):
            chat.request(QUESTION, parse_user_reply, purpose="q")
        assert len(server.requests) == 6


def test_a_success_closes_the_circuit_count() -> None:
    failing = [Script(status=503)] * 2 + [Script('{"reply": "Yes"}')] + [Script(status=503)] * 2
    with fake_openai(scripted(*failing, Script('{"reply": "No"}'))) as server:
        chat = client(server.base_url, max_attempts=1, circuit_failures=3)
        outcomes = []
        for _ in range(6):
            try:
                outcomes.append(chat.request(QUESTION, parse_user_reply, purpose="q").value)
            except UserSimulatorError:
                outcomes.append("failed")
    # Never three failures in a row, so never down: every call reached the server.
    assert outcomes == ["failed", "failed", "Yes", "failed", "failed", "No"]
    assert len(server.requests) == 6


def test_concurrent_callers_of_one_request_share_its_reply(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "cache.sqlite")
    with fake_openai(lambda request: Script('{"reply": "Yes"}', delay=0.3)) as server:
        chat = client(server.base_url, cache)
        replies: list[Any] = []
        errors: list[BaseException] = []

        def ask() -> None:
            try:
                replies.append(chat.request(QUESTION, parse_user_reply, purpose="q"))
            except BaseException as error:  # surfaced below, not lost in the thread
                errors.append(error)

        threads = [threading.Thread(target=ask) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not errors
    assert len(server.requests) == 1  # the GRPO group's 8 episodes asked once
    assert [r.value for r in replies] == ["Yes"] * 8
    assert sorted(r.attempts for r in replies) == [0] * 7 + [1]
    assert sum(r.prompt_tokens > 0 for r in replies) == 1  # billed once


def test_a_busy_cache_is_skipped_once_not_given_up(tmp_path: Path) -> None:
    import sqlite3

    cache = ResponseCache(tmp_path / "cache.sqlite")
    cache._give_up(sqlite3.OperationalError("database is locked"))
    assert not cache._broken
    cache._give_up(sqlite3.DatabaseError("file is not a database"))
    assert cache._broken


def test_retry_after_is_honoured() -> None:
    busy = Script(status=429, headers={"Retry-After": "7"})
    with fake_openai(scripted(busy, Script('{"correct": false}'))) as server:
        chat = client(server.base_url, max_backoff_s=10)
        assert chat.request(QUESTION, parse_verdict, purpose="judge").value is False
    assert chat.sleep.seconds == [7.0]  # type: ignore[attr-defined]


def test_a_request_that_times_out_is_retried() -> None:
    with fake_openai(
        scripted(Script('{"reply": "No"}', delay=1.5), Script('{"reply": "Yes"}'))
    ) as server:
        chat = client(server.base_url, timeout_s=0.5)
        reply = chat.request(QUESTION, parse_user_reply, purpose="question")
    assert (reply.value, reply.attempts) == ("Yes", 2)


def test_a_request_the_server_refuses_for_good_is_not_retried() -> None:
    with fake_openai(scripted(Script(status=404))) as server:
        chat = client(server.base_url)
        with pytest.raises(UserSimulatorError, match=r"in 1 try \(HTTP 404"):
            chat.request(QUESTION, parse_user_reply, purpose="question")
    assert len(server.requests) == 1


def test_an_unreachable_server_is_an_error_after_every_try() -> None:
    chat = client("http://127.0.0.1:9/v1", timeout_s=0.5)  # the discard port: nothing listens
    with pytest.raises(UserSimulatorError, match=r"in 3 tries \(APIConnectionError"):
        chat.request(QUESTION, parse_user_reply, purpose="question")


def test_the_cache_answers_the_same_request_and_only_that(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "cache.sqlite")
    with fake_openai(scripted(Script('{"reply": "Yes"}'), Script('{"reply": "No"}'))) as server:
        chat = client(server.base_url, cache)
        first = chat.request(QUESTION, parse_user_reply, purpose="question")
        again = chat.request(QUESTION, parse_user_reply, purpose="question")
        assert (again.value, again.cached, again.attempts) == ("Yes", True, 0)
        assert first.prompt_tokens > 0
        assert (again.prompt_tokens, again.completion_tokens) == (0, 0)  # nothing billed
        assert len(server.requests) == 1
        # Another model, another temperature or another question: not the same request.
        other = [{"role": "system", "content": "host"}, {"role": "user", "content": "Is it red?"}]
        assert not chat.request(other, parse_user_reply, purpose="question").cached
        assert (
            not client(server.base_url, cache, model="judge-model")
            .request(QUESTION, parse_user_reply, purpose="question")
            .cached
        )
        assert (
            not client(server.base_url, cache, temperature=0.7)
            .request(QUESTION, parse_user_reply, purpose="question")
            .cached
        )
        assert len(server.requests) == 4
    # A second process (a new cache object on the same file) sees the replies.
    reopened = ResponseCache(tmp_path / "cache.sqlite")
    assert len(reopened) == 4
    chat = client("http://127.0.0.1:9/v1", reopened)  # nothing listens: must come from cache
    assert chat.request(QUESTION, parse_user_reply, purpose="question").value == "Yes"


def test_malformed_replies_are_never_cached(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "cache.sqlite")
    with fake_openai(scripted(Script("nope"), Script('{"reply": "No"}'))) as server:
        client(server.base_url, cache).request(QUESTION, parse_user_reply, purpose="question")
    assert len(cache) == 1
    key = request_key(endpoint(server.base_url), QUESTION)
    assert cache.get(key) is not None
    assert cache.get(key)[0] == '{"reply": "No"}'


def test_an_unusable_cache_is_bypassed(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    cache = ResponseCache(blocker / "cache.sqlite")  # its folder cannot be made
    with fake_openai(scripted(Script('{"reply": "Yes"}'))) as server:
        chat = client(server.base_url, cache)
        for _ in range(2):
            assert chat.request(QUESTION, parse_user_reply, purpose="q").value == "Yes"
    assert len(server.requests) == 2


def test_concurrent_requests_are_limited_per_endpoint() -> None:
    with fake_openai(lambda request: Script('{"reply": "Yes"}', delay=0.2)) as server:
        chat = client(server.base_url, concurrency=2)
        threads = [
            threading.Thread(
                target=chat.request,
                args=(
                    [{"role": "user", "content": f"question {n}"}],
                    parse_user_reply,
                ),
                kwargs={"purpose": "q"},
            )
            for n in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len(server.requests) == 8
    assert server.max_in_flight == 2


def test_the_server_is_checked_for_the_model_and_one_real_reply() -> None:
    with fake_openai(scripted(Script('{"reply": "Yes"}'))) as server:
        client(server.base_url).check_model()
        assert server.requests[-1]["messages"][-1]["content"] == "Is water wet?"
        with pytest.raises(UserSimulatorError, match=r"does not serve model 'Qwen/Qwen3-8B'"):
            client(server.base_url, model="Qwen/Qwen3-8B").check_model()
    with pytest.raises(UserSimulatorError, match="cannot be reached"):
        client("http://127.0.0.1:9/v1", timeout_s=0.5).check_model()


def test_a_server_refusing_the_configured_fields_fails_the_check() -> None:
    def refuse_json_mode(request: dict[str, Any]) -> Script:
        return Script(status=400) if "response_format" in request else Script('{"reply": "No"}')

    with fake_openai(refuse_json_mode) as server:
        client(server.base_url).check_model()  # without json_mode: fine
        with pytest.raises(UserSimulatorError, match="does not answer as the gyms need") as caught:
            client(server.base_url, json_mode=True).check_model()
    assert "HTTP 400" in str(caught.value)
    assert "\n" not in str(caught.value)
    with (
        fake_openai(scripted(Script("Sure, water is wet."))) as server,
        pytest.raises(UserSimulatorError, match="malformed reply"),
    ):
        client(server.base_url).check_model()


def test_simulator_and_judge_are_configured_apart(tmp_path: Path) -> None:
    settings = UserSimulatorSettings.model_validate(
        {
            "simulator": {"base_url": "http://a/v1", "model": "user-model"},
            "judge": {"base_url": "http://b/v1", "model": "judge-model"},
            "cache_path": str(tmp_path / "c.sqlite"),
        }
    )
    user = SimulatedUser.from_settings(settings)
    assert user.simulator.endpoint.model == "user-model"
    assert user.judge.endpoint.model == "judge-model"
    assert user.simulator.cache is user.judge.cache  # one cache file for both roles
    same = SimulatedUser.from_settings(UserSimulatorSettings(cache=False))
    assert same.judge is same.simulator
    assert same.simulator.cache is None


def test_the_api_key_comes_from_the_named_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_KEY", "secret")
    assert EndpointSettings(api_key_env="MY_KEY").api_key() == "secret"
    monkeypatch.delenv("MY_KEY")
    assert EndpointSettings(api_key_env="MY_KEY").api_key() == "EMPTY"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"scores": [1, 0.5]}', "list of 3"),
        ('{"scores": [1, 0.7, 0]}', "0, 0.5 or 1"),
        ('{"scores": [true, 1, 0]}', "0, 0.5 or 1"),
        ('{"scores": "1 1 1"}', "list of 3"),
    ],
)
def test_rubric_replies_are_checked_item_by_item(text: str, problem: str) -> None:
    parse = rubric_parser(3)
    assert parse('{"scores": [1, 0.5, 0]}') == [1.0, 0.5, 0.0]
    with pytest.raises(MalformedReplyError, match=problem):
        parse(text)


def test_parse_json_object_needs_exactly_the_fields() -> None:
    fields = {"a": int, "b": str}
    assert parse_json_object(json.dumps({"b": "x", "a": 1}), fields) == {"a": 1, "b": "x"}
    for bad in ('{"a": 1}', '{"a": 1, "b": "x", "c": 2}', "1", "{"):
        with pytest.raises(MalformedReplyError):
            parse_json_object(bad, fields)


def test_replies_are_shared_by_threads_without_loss(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "cache.sqlite")
    errors: list[BaseException] = []
    with fake_openai(lambda r: Script(json.dumps({"reply": "Yes"}))) as server:
        chat = client(server.base_url, cache, concurrency=4)

        def ask(n: int) -> None:
            try:
                question = [{"role": "user", "content": f"q{n % 5}"}]
                assert chat.request(question, parse_user_reply, purpose="q").value == "Yes"
            except BaseException as error:  # surfaced below, not lost in the thread
                errors.append(error)

        threads = [threading.Thread(target=ask, args=(n,)) for n in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not errors
    assert len(cache) == 5
    # Five distinct questions: each sent once (shared while in flight, then from the cache).
    assert sorted(r["messages"][0]["content"] for r in server.requests) == [
        f"q{n}" for n in range(5)
    ]
