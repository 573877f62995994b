"""The ``bao_agent`` agent loop: one gym episode per rollout, with BAO shaping.

verl 0.9.1 hands an advantage estimator nothing but token tensors (``token_level_rewards``,
``response_mask``, the group uid), so everything BAO needs per turn must be in those tensors
by the time the episode leaves this loop:

* every assistant message is one turn, a run of ``response_mask == 1`` tokens; the
  environment's observations (and the chat-template tokens around them) have mask 0;
* each turn's shaped reward (``bao.shaping``: user-involvement weight, information-seeking and
  over-thinking penalties) is written on that turn's last token of ``rm_scores``, which verl
  uses as ``token_level_scores``; ``reward_score`` holds their sum, so verl's reward loop is
  skipped;
* what evaluation needs (each turn's choice, event and raw reward) travels in
  ``extra_fields["reward_extra_info"]``: per-trajectory metric values that verl averages into
  its validation metrics, and the whole trajectory as JSON, which the launcher reads back from
  the validation dump to compute Pass@U-k, score and user involvement exactly.

The episode ends when the environment ends it (a correct answer, ``finish``, or the turn
budget), when the model calls no tool (that message is played as an invalid turn: it used a
turn of the budget), or when the response would outgrow ``rollout.response_length``.

The gym is Function-Gym unless the agent-loop config names a gym file (``gym_path``, written
by the launcher for Telepathy-Gym and Turtle-Gym). Their steps wait on the simulated user, so
they run in a thread pool while the event loop drives the other episodes; what the user's
calls cost travels in ``reward_extra_info`` as ``bao_user_*``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import Any, Final
from uuid import uuid4

import torch
from verl.experimental.agent_loop.agent_loop import (
    AgentLoopBase,
    AgentLoopMetrics,
    AgentLoopOutput,
    register,
)
from verl.experimental.agent_loop.tool_parser import FunctionCall, ToolParser
from verl.utils.profiler import simple_timer

from bao.envs.function_gym import DEFAULT_MAX_TURNS, FunctionGymEnv, format_action
from bao.envs.user_gyms import TelepathyGymEnv, TurtleGymEnv
from bao.envs.user_simulator import UserSimulatorSettings, shared_user
from bao.gym_tasks import (
    TelepathyEntity,
    TurtleStory,
    by_title,
    entity_from_record,
    story_from_record,
)
from bao.metrics import DEFAULT_K_MAX, trajectory_values
from bao.shaping import ShapingCoefficients, shape_trajectory
from bao.tasks import FunctionTask, load_function_tasks
from bao.trajectory import Trajectory, Turn
from bao.verl.data import (
    AGENT_NAME,
    EVAL_KEY,
    GYM_TOOL_CHOICES,
    GYM_TOOL_SCHEMAS,
    METRIC_PREFIX,
    TASK_ID_KEY,
    TOOL_NAME,
    TRAJECTORY_KEY,
    task_from_row,
    user_gym_task_from_row,
)

log = logging.getLogger(__name__)

# Server fields a multi-turn episode accumulates rather than overwrites (as verl's tool loop).
_SUMMED_SERVER_FIELDS: Final = (
    "spec_num_draft_tokens",
    "spec_num_accepted_tokens",
    "spec_num_verify_steps",
)


def _bad_call(choices: tuple[str, ...]) -> str:
    return (
        f"Invalid tool call: call {TOOL_NAME} with 'choice' one of "
        f"{', '.join(choices)} and a string 'content'."
    )


class BaoAgentLoopOutput(AgentLoopOutput):
    """An agent-loop output whose rewards sit on each turn's last token."""

    token_rewards: list[float]
    """One value per response token: each turn's shaped reward on its last token, else 0."""

    def as_dict(self) -> dict[str, Any]:
        output = super().as_dict()
        output.pop("token_rewards", None)
        # The base class puts reward_score on the last token; BAO needs it turn by turn.
        output["rm_scores"] = torch.tensor(self.token_rewards, dtype=torch.float32)
        return output


@lru_cache(maxsize=4)
def _functions(path: str) -> dict[str, FunctionTask]:
    # One read per worker process, shared by every episode it plays.
    return {task.id: task for task in load_function_tasks(path)}


class UserGym:
    """A Telepathy/Turtle gym file, read once per worker process: the gym, its simulated user
    (shared by every episode the process plays) and the records UserRL rows name by title."""

    def __init__(self, path: str) -> None:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
        self.gym: str = document["gym"]
        self.success_threshold = float(document["success_threshold"])
        self.settings = UserSimulatorSettings.model_validate(document["user_simulator"])
        read = entity_from_record if self.gym == "telepathy_gym" else story_from_record
        self.by_title: dict[str, TelepathyEntity | TurtleStory] = by_title(
            read(record, where=f"{path}: records") for record in document.get("records", [])
        )
        # Each step of these gyms waits on HTTP: as many threads as requests may be in flight,
        # over every endpoint an episode of this process may ask.
        training, evaluation = self.settings, self.settings.for_evaluation()
        endpoints = {
            endpoint.model_dump_json(): endpoint.concurrency
            for endpoint in (
                training.simulator,
                training.judge_endpoint(),
                evaluation.simulator,
                evaluation.judge_endpoint(),
            )
        }
        workers = sum(endpoints.values())
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bao-user")

    def env(self, row: dict[str, Any], max_turns: int) -> TelepathyGymEnv | TurtleGymEnv:
        """The episode of ``row``: validation rows (marked by the launcher, ``extra_info.
        bao_eval``) meet the evaluation's user and judge."""
        task = user_gym_task_from_row(row, self.gym, self.by_title)
        extra = row.get("extra_info")
        evaluating = isinstance(extra, dict) and extra.get(EVAL_KEY) is True
        user = shared_user(self.settings.for_evaluation() if evaluating else self.settings)
        if isinstance(task, TelepathyEntity):
            return TelepathyGymEnv(task, user, max_turns=max_turns)
        return TurtleGymEnv(
            task, user, max_turns=max_turns, success_threshold=self.success_threshold
        )


@lru_cache(maxsize=4)
def _user_gym(path: str) -> UserGym:
    return UserGym(path)


@register(AGENT_NAME)
class BaoAgentLoop(AgentLoopBase):
    """Plays Function-Gym through the model's ``interact_with_env(choice, content)`` calls.

    Args:
        functions_path: the UserRL functions JSON that rows naming tasks by id refer to
            (rows written by ``bao.verl.data`` carry their task and need none).
        gym_path: a Telepathy/Turtle gym file (``bao.verl.launch``); without one the loop
            plays Function-Gym.
        *args, **kwargs: what verl's agent-loop worker passes every agent loop.
    """

    def __init__(
        self,
        *args: Any,
        functions_path: str | None = None,
        gym_path: str | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.pop("tools", None)  # verl's configured tools; this loop has its own one tool
        super().__init__(*args, **kwargs)
        multi_turn = self.rollout_config.multi_turn
        self.max_turns = int(multi_turn.max_assistant_turns or DEFAULT_MAX_TURNS)
        self.max_observation_length = int(multi_turn.max_tool_response_length)
        self.response_length = int(self.rollout_config.response_length)
        self.tool_parser = ToolParser.get_tool_parser(multi_turn.format, self.tokenizer)
        settings = self.config.algorithm.get("bao") or {}
        self.coefficients = ShapingCoefficients(
            user_lambda=float(settings.get("user_lambda", 0.0)),
            info_seeking=float(settings.get("info_seeking", 0.0)),
            over_thinking=float(settings.get("over_thinking", 0.0)),
            min_turns=int(settings.get("min_turns", 15)),
        )
        self.k_max = int(settings.get("k_max", DEFAULT_K_MAX))
        self.functions = _functions(functions_path) if functions_path else None
        self.user_gym = _user_gym(gym_path) if gym_path else None
        self.gym = self.user_gym.gym if self.user_gym else "function_gym"
        self.tool_choices = GYM_TOOL_CHOICES[self.gym]
        special: list[str] = getattr(self.tokenizer, "all_special_tokens", [])
        self._special_tokens = [token for token in special if token]

    def _attempted_call(self, token_ids: list[int]) -> str | None:
        """The reply's text from the tool-call marker on, if it has the marker (Hermes)."""
        marker = getattr(self.tool_parser, "tool_call_start_token", None)
        tokenizer: Any = self.tokenizer  # verl annotates it as the AutoTokenizer factory
        text = str(tokenizer.decode(token_ids))
        if not marker or marker not in text:
            return None
        return self._without_special_tokens(text[text.index(marker) :])

    def _without_special_tokens(self, text: str) -> str:
        # The tool parser decodes with special tokens (the end-of-turn marker among them).
        for token in self._special_tokens:
            text = text.replace(token, "")
        return text.strip()

    async def run(self, sampling_params: dict[str, Any], **kwargs: Any) -> AgentLoopOutput:
        env: FunctionGymEnv | TelepathyGymEnv | TurtleGymEnv
        if self.user_gym is None:
            task = task_from_row(kwargs, self.functions)
            env, task_id = FunctionGymEnv(task, max_turns=self.max_turns), task.id
        else:
            env = self.user_gym.env(kwargs, self.max_turns)
            task_id = env.task_id
        env.reset()
        tools = [GYM_TOOL_SCHEMAS[self.gym]]
        messages: list[dict[str, Any]] = [dict(message) for message in kwargs["raw_prompt"]]
        request_id = uuid4().hex  # one id per episode: the server keeps its prefix cache
        params = dict(sampling_params)
        if self.tool_parser.stop_token_ids:  # formats whose calls are not followed by EOS
            stops = set(params.get("stop_token_ids") or []) | set(self.tool_parser.stop_token_ids)
            params["stop_token_ids"] = sorted(stops)
        timing: dict[str, float] = {}
        server_fields: dict[str, Any] = {}
        trajectory = Trajectory(task_id=task_id)

        token_ids = await self.ct_build_initial_tokens(messages, tools=tools)
        mask: list[int] = []
        logprobs: list[float] = []  # stays empty when the server sends none
        done = False
        while not done:
            with simple_timer("generate_sequences", timing):
                generated = await self.server_manager.generate(
                    request_id=request_id, prompt_ids=token_ids, sampling_params=params
                )
            _merge_server_fields(server_fields, generated.extra_fields)
            merged, mask, aligned = await self.ct_merge_assistant_token(
                token_ids,
                generated.token_ids,
                mask,
                logprobs if (logprobs or generated.log_probs) else None,
                assistant_logprobs=generated.log_probs or None,
            )
            token_ids, logprobs = merged.token_ids, aligned or []

            text, calls = await self.tool_parser.extract_tool_calls(generated.token_ids)
            text = self._without_special_tokens(text)
            call = calls[0] if calls else None
            attempted = self._attempted_call(generated.token_ids) if call is None else None
            if attempted is not None:
                # The parser drops a call it cannot decode; that is a malformed call (a turn
                # with a complaint, the raw call recorded), not the end of the episode.
                call = FunctionCall(name=TOOL_NAME, arguments=attempted)
            action, content, complaint = _action_of(call, text, self.tool_choices)
            with simple_timer("tool_calls", timing):
                if self.user_gym is None:
                    step = env.step(action)
                else:  # waits on the simulated user: off the event loop
                    loop = asyncio.get_running_loop()
                    step = await loop.run_in_executor(self.user_gym.executor, env.step, action)
                observation, reward, terminated, truncated, info = step
            observation = complaint or observation
            trajectory.turns.append(Turn.from_step(content, observation, reward, info))
            done = terminated or truncated or call is None or len(mask) >= self.response_length
            if done:
                break

            # The assistant's tokens are already in the stream (as generated); the builder
            # renders only what comes after `previous`, so the message goes in before it.
            messages.append(_assistant_message(text, call))
            previous = list(messages)
            messages.append({"role": "tool", "content": observation[: self.max_observation_length]})
            merged, mask, aligned = await self.ct_merge_context_msg(
                previous, messages, token_ids, mask, logprobs or None, tools=tools
            )
            token_ids, logprobs = merged.token_ids, aligned or []
            done = len(mask) >= self.response_length

        shape_trajectory(trajectory, self.coefficients)
        shaped = [float(turn.shaped_reward or 0.0) for turn in trajectory.turns]
        # Merges may have inserted boundary tokens (mask 0) but only ever after the prompt.
        prompt_ids = token_ids[: len(token_ids) - len(mask)]
        response_ids = token_ids[len(prompt_ids) :][: self.response_length]
        mask = mask[: self.response_length]
        # Prefixed: verl's validation dump has fields of its own (its "score" is the shaped sum).
        values: dict[str, Any] = {
            f"{METRIC_PREFIX}{key}": value
            for key, value in trajectory_values(trajectory, self.k_max).items()
        }
        if not isinstance(env, FunctionGymEnv):
            values.update({f"{METRIC_PREFIX}{k}": v for k, v in env.stats.as_dict().items()})
        values[TRAJECTORY_KEY] = trajectory.to_json()
        values[TASK_ID_KEY] = task_id
        extra_fields = {
            **server_fields,
            "reward_extra_info": values,
            "turn_scores": shaped,
            "tool_rewards": trajectory.rewards,
        }
        return BaoAgentLoopOutput(
            prompt_ids=prompt_ids,
            response_ids=response_ids,
            response_mask=mask,
            response_logprobs=logprobs[: self.response_length] if logprobs else None,
            reward_score=sum(shaped),
            token_rewards=place_turn_rewards(mask, shaped),
            num_turns=2 * len(trajectory.turns),
            metrics=AgentLoopMetrics(**timing),
            extra_fields=extra_fields,
        )


def place_turn_rewards(mask: list[int], turn_rewards: list[float]) -> list[float]:
    """Each turn's reward on the last token of its run of ``mask == 1``; others 0.

    A turn left without tokens (an empty generation, or cut by the response-length limit)
    adds its reward to the last turn that has tokens, so the trajectory's total, which the
    group z-score is taken over, is kept.
    """
    ends = [i for i, m in enumerate(mask) if m and (i + 1 == len(mask) or not mask[i + 1])]
    rewards = [0.0] * len(mask)
    if not ends:
        if any(turn_rewards):
            log.warning("an episode's %d turns left no assistant tokens", len(turn_rewards))
        return rewards
    for index, value in enumerate(turn_rewards):
        rewards[ends[min(index, len(ends) - 1)]] += value
    if len(turn_rewards) > len(ends):
        log.warning(
            "%d turns share %d token runs: the rewards of the last turns were folded into "
            "the last run (raise rollout.max_response_length)",
            len(turn_rewards),
            len(ends),
        )
    return rewards


def _action_of(
    call: FunctionCall | None, text: str, choices: tuple[str, ...]
) -> tuple[str, str, str | None]:
    """The environment action of a turn, the content to record, and our own observation
    when the call itself was malformed."""
    if call is None:
        # No tool call: an empty action is the environment's invalid turn. The text is not
        # played, so a reply that merely contains "[answer] 3" is never taken as an answer.
        return "", text.strip()[:200], None
    try:
        arguments = json.loads(call.arguments)
    except (TypeError, ValueError):
        arguments = None
    choice = arguments.get("choice") if isinstance(arguments, dict) else None
    content = arguments.get("content", "") if isinstance(arguments, dict) else None
    if call.name != TOOL_NAME or choice not in choices or not isinstance(content, str):
        return "", str(call.arguments)[:200], _bad_call(choices)
    return format_action(choice, content), content, None


def _assistant_message(text: str, call: FunctionCall | None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if call is not None:
        try:
            arguments: Any = json.loads(call.arguments)
        except (TypeError, ValueError):
            arguments = call.arguments
        message["tool_calls"] = [
            {"type": "function", "function": {"name": call.name, "arguments": arguments}}
        ]
    return message


def _merge_server_fields(kept: dict[str, Any], new: dict[str, Any]) -> None:
    """Copies the server's ``extra_fields``: the first turn's as they are, later turns'
    weight version (``max_global_steps``) and speculative-decoding counts."""
    if not kept:
        kept.update(new)
        return
    if new.get("max_global_steps"):
        kept["max_global_steps"] = new["max_global_steps"]
    for key in _SUMMED_SERVER_FIELDS:
        if key in new and key in kept:
            kept[key] = int(kept[key]) + int(new[key])
