"""What the simulated user of Telepathy-Gym and Turtle-Gym costs a trial.

    .venv/bin/python benchmarks/bench_user_calls.py [--data ../shared/data/userrl] [--quick]

1. Prompt sizes: every request the gyms send (a question to the user, a guess or a story to
   the judge), built by the environments themselves for every entity and story of the data,
   in characters and in approximate tokens (characters / 4: no model tokenizer is available
   offline; Qwen3's tokenizer gives about that on English prose).
2. The client's own cost: requests per second through :class:`ChatJSONClient` against an
   OpenAI-compatible server on localhost that answers at once (the fake server of the tests),
   at 1, 8 and 32 requests in flight, and cache hits per second. A real server adds its
   generation time; this is what the project adds around it.
3. Calls per trial for the BAO/UserRL recipe (batch 128 x 8 rollouts, 16 turns, 15 epochs,
   validation every 5 steps), as an upper bound (every turn a call) and at 8 turns per
   episode, with the prompt tokens they carry.

Results: results/bench_user_calls.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for path in (HERE, ROOT):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from common import machine_line, print_table, write_results  # noqa: E402

CHARS_PER_TOKEN = 4.0
RECIPE = {"batch": 128, "rollouts": 8, "max_turns": 16, "epochs": 15, "test_freq": 5}


class _Recorder:
    """A stand-in for a client: records the messages, answers like a user who says Yes."""

    def __init__(self, reply: Any) -> None:
        self.reply = reply
        self.sizes: list[int] = []
        self.endpoint = type("E", (), {"max_attempts": 1})()

    def request(self, messages: Any, parse: Any, *, purpose: str) -> Any:
        from bao.envs.user_simulator import Reply

        self.sizes.append(sum(len(m["content"]) for m in messages))
        return Reply(self.reply(), False, 1, 0, 0, 0.0)


def task_files(data: Path) -> tuple[Path, Path]:
    """UserRL's entities and stories in ``data``, else the project's examples."""
    entities = data / "telepathy_gym" / "entities_train.json"
    stories = data / "turtle_gym" / "stories_train.json"
    if entities.is_file() and stories.is_file():
        return entities, stories
    examples = ROOT / "configs" / "data"
    return examples / "telepathy_entities.json", examples / "turtle_stories.json"


def prompt_sizes(entity_file: Path, story_file: Path) -> dict[str, dict[str, float]]:
    """Characters of each kind of request, over every task of the data."""
    from bao.envs.user_gyms import TelepathyGymEnv, TurtleGymEnv
    from bao.envs.user_simulator import SimulatedUser
    from bao.gym_tasks import load_telepathy_entities, load_turtle_stories

    sizes: dict[str, list[int]] = {}

    def record(kind: str, recorder: _Recorder) -> None:
        sizes.setdefault(kind, []).extend(recorder.sizes)

    for entity in load_telepathy_entities(entity_file):
        asked, judged = _Recorder(lambda: "Yes"), _Recorder(lambda: False)
        env = TelepathyGymEnv(entity, SimulatedUser(asked, judged))  # type: ignore[arg-type]
        env.reset()
        env.step("[action] Is it something you can hold in one hand?")
        env.step(f"[answer] {entity.title}")
        record("telepathy question", asked)
        record("telepathy guess", judged)
    for story in load_turtle_stories(story_file):
        scores = [0.0] * len(story.rubric)
        asked, judged = _Recorder(lambda: "No"), _Recorder(lambda s=scores: s)
        env = TurtleGymEnv(story, SimulatedUser(asked, judged))  # type: ignore[arg-type]
        env.reset()
        env.step("[action] Did someone die?")
        env.step(f"[answer] {story.bottom}")  # an answer as long as the hidden story
        record("turtle question", asked)
        record("turtle story", judged)
    return {
        kind: {
            "requests": len(values),
            "mean_chars": statistics.fmean(values),
            "max_chars": max(values),
            "approx_tokens": statistics.fmean(values) / CHARS_PER_TOKEN,
        }
        for kind, values in sizes.items()
    }


def client_throughput(requests: int) -> dict[str, float]:
    """Requests per second through the client against an instant localhost server."""
    from bao.envs.user_gyms import parse_user_reply
    from bao.envs.user_simulator import ChatJSONClient, EndpointSettings, ResponseCache
    from tests.bao.envs.fake_openai import Script, fake_openai

    results: dict[str, float] = {}
    with fake_openai(lambda request: Script('{"reply": "Yes"}')) as server:
        for in_flight in (1, 8, 32):
            endpoint = EndpointSettings(
                base_url=server.base_url, model="user-model", concurrency=in_flight
            )
            client = ChatJSONClient(endpoint)
            questions = [[{"role": "user", "content": f"question {n}"}] for n in range(requests)]
            started = time.perf_counter()

            def ask(part: list[list[dict[str, str]]], client: ChatJSONClient = client) -> None:
                for question in part:
                    client.request(question, parse_user_reply, purpose="bench")

            threads = [
                threading.Thread(target=ask, args=(questions[i::in_flight],))
                for i in range(in_flight)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            results[f"requests_per_s_{in_flight}_in_flight"] = requests / (
                time.perf_counter() - started
            )
        with tempfile.TemporaryDirectory() as folder:
            cache = ResponseCache(Path(folder) / "cache.sqlite")
            client = ChatJSONClient(
                EndpointSettings(base_url=server.base_url, model="user-model"), cache
            )
            question = [{"role": "user", "content": "cached question"}]
            client.request(question, parse_user_reply, purpose="bench")
            started = time.perf_counter()
            for _ in range(requests):
                client.request(question, parse_user_reply, purpose="bench")
            results["cache_hits_per_s"] = requests / (time.perf_counter() - started)
            cache.close()
    return results


def calls_per_trial(
    sizes: dict[str, dict[str, float]], task_counts: dict[str, int]
) -> list[dict[str, Any]]:
    """The recipe's calls per training run, and the prompt tokens they carry (a call is a
    question or an answer: the mean of the two kinds' sizes)."""
    kinds = {
        "telepathy_gym": ("telepathy question", "telepathy guess"),
        "turtle_gym": ("turtle question", "turtle story"),
    }
    rows = []
    for gym, tasks in task_counts.items():
        per_call = statistics.fmean(sizes[kind]["approx_tokens"] for kind in kinds[gym])
        # The file is UserRL's training split (90%); its test split is a ninth of that.
        train, held_out = tasks, max(1, round(tasks / 9))
        steps = (train // RECIPE["batch"]) * RECIPE["epochs"]
        validations = steps // RECIPE["test_freq"] + (steps % RECIPE["test_freq"] > 0)
        for turns in (RECIPE["max_turns"], 8):
            training = steps * RECIPE["batch"] * RECIPE["rollouts"] * turns
            validation = validations * held_out * turns
            rows.append(
                {
                    "gym": gym,
                    "tasks": tasks,
                    "steps": steps,
                    "turns_per_episode": turns,
                    "training_calls": training,
                    "validation_calls": validation,
                    "prompt_tokens_millions": (training + validation) * per_call / 1e6,
                }
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        type=Path,
        default=ROOT.parent / "shared" / "data" / "userrl",
        help="UserRL data folder (default ../shared/data/userrl; the examples without it)",
    )
    parser.add_argument("--quick", action="store_true", help="fewer client requests")
    parser.add_argument("--out", type=Path, help="results folder (default benchmarks/results)")
    args = parser.parse_args(argv)

    from bao.gym_tasks import load_telepathy_entities, load_turtle_stories

    entity_file, story_file = task_files(args.data)
    sizes = prompt_sizes(entity_file, story_file)
    throughput = client_throughput(200 if args.quick else 2000)
    counts = {
        "telepathy_gym": len(load_telepathy_entities(entity_file)),
        "turtle_gym": len(load_turtle_stories(story_file)),
    }
    trials = calls_per_trial(sizes, counts)
    print_table(
        f"Requests the gyms send ({machine_line()})",
        ["request", "requests", "mean chars", "max chars", "~tokens (chars/4)"],
        [
            (kind, v["requests"], v["mean_chars"], v["max_chars"], v["approx_tokens"])
            for kind, v in sizes.items()
        ],
    )
    print_table(
        "The client against an instant localhost server",
        ["measure", "value"],
        list(throughput.items()),
    )
    print_table(
        "Simulated-user calls per training run (BAO/UserRL recipe)",
        [
            "gym",
            "tasks",
            "steps",
            "turns/episode",
            "training calls",
            "validation calls",
            "prompt tokens (M)",
        ],
        [tuple(row.values()) for row in trials],
    )
    path = write_results(
        "bench_user_calls",
        {
            "task_files": [str(entity_file), str(story_file)],
            "prompt_sizes": sizes,
            "client": throughput,
            "per_trial": trials,
            "recipe": RECIPE,
        },
        quick=args.quick,
        results_dir=args.out,
    )
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
