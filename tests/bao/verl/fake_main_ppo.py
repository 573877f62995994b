"""A stand-in for ``python -m verl.trainer.main_ppo`` that needs no GPU.

It does what the real entry point does up to the GPU work, with verl's own pieces: composes
the launcher's overrides onto ``ppo_trainer`` with Hydra, runs ``validate_config``, checks that
``VERL_USE_EXTERNAL_MODULES`` registered ``bao_turn`` and ``bao_agent``, logs a few steps through
verl's ``Tracking`` (console, file and MLflow, attached to ``MLFLOW_RUN_ID``), and runs one
validation pass: the validation parquet read by verl's ``RLHFDataset``, every row played by the
registered agent loop (instantiated from verl's registry, with the agent-loop config file when
there is one) against a scripted server, its outputs passed through ``as_dict`` and the
tensordict rows the v1 trainer keeps them in, and dumped by the v1 trainer's own writer.

Environment: ``FAKE_VERL_FAIL=1`` fails the way a crashed run does (a traceback, status 1);
``FAKE_VERL_PID_FILE`` gets this process's id; ``FAKE_VERL_MID_VALIDATION=1`` also validates
every ``test_freq`` steps before the last, as verl does, and ``FAKE_VERL_LINGER_S`` keeps it
running that long after each of those passes, as a run that goes on training would (a pruner
stops it); ``FAKE_VERL_RAY_DIR`` starts a local Ray in that folder first, as verl's driver does.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import verl
from hydra import compose, initialize_config_dir


def main(overrides: list[str]) -> int:
    if os.environ.get("FAKE_VERL_PID_FILE"):
        Path(os.environ["FAKE_VERL_PID_FILE"]).write_text(str(os.getpid()))
    if os.environ.get("FAKE_VERL_FAIL"):
        print("Training Progress: 0%", flush=True)
        print("Traceback (most recent call last):", flush=True)
        print("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB", flush=True)
        return 1
    config_dir = str(Path(verl.__file__).parent / "trainer" / "config")
    with initialize_config_dir(config_dir=config_dir, version_base=None):
        config = compose(config_name="ppo_trainer", overrides=overrides)

    from verl.experimental.agent_loop.agent_loop import _agent_loop_registry
    from verl.trainer.ppo.core_algos import ADV_ESTIMATOR_REGISTRY

    loop_name = config.actor_rollout_ref.rollout.agent.default_agent_loop
    if config.algorithm.adv_estimator not in ADV_ESTIMATOR_REGISTRY:
        print(f"ValueError: Unknown advantage estimator {config.algorithm.adv_estimator}")
        return 1
    if loop_name not in _agent_loop_registry:
        print(f"AssertionError: Agent loop {loop_name} not registered")
        return 1

    from omegaconf import OmegaConf
    from verl.utils.tracking import Tracking

    tracking = Tracking(
        project_name=config.trainer.project_name,
        experiment_name=config.trainer.experiment_name,
        default_backend=list(config.trainer.logger),
        config=OmegaConf.to_container(config, resolve=True),
    )
    if os.environ.get("FAKE_VERL_RAY_DIR"):
        # A local Ray of its own, as verl's driver starts one (its GCS and raylet are
        # processes of this session, with the folder in their command lines).
        import ray

        ray.init(num_cpus=1, include_dashboard=False, _temp_dir=os.environ["FAKE_VERL_RAY_DIR"])
    steps = int(config.trainer.total_training_steps or 2)
    test_freq = int(config.trainer.test_freq or 0)
    for step in range(1, steps + 1):
        tracking.log({"critic/score/mean": -0.1 * step, "actor/pg_loss": 0.5 / step}, step=step)
        # verl validates every test_freq steps, and at the end (below).
        mid_validation = os.environ.get("FAKE_VERL_MID_VALIDATION") and test_freq > 0
        if mid_validation and step % test_freq == 0 and step < steps:
            tracking.log(validate(config, step), step=step)
            # A sweep's pruner reads this pass meanwhile and may stop the run here.
            time.sleep(float(os.environ.get("FAKE_VERL_LINGER_S", "0")))
    if config.trainer.save_freq > 0:  # verl saves the last step whenever save_freq > 0
        last = Path(config.trainer.default_local_dir) / f"global_step_{steps}" / "actor"
        last.mkdir(parents=True)
        (last / "model.safetensors").write_bytes(b"weights")
    val_metrics = validate(config, steps)
    tracking.log(val_metrics, step=steps)
    tracking.finish()
    return 0


def validate(config: Any, step: int) -> dict[str, float]:
    """One validation pass over ``data.val_files``, dumped like the v1 trainer dumps it."""
    import hydra
    import numpy as np
    from omegaconf import OmegaConf
    from transformers import AutoTokenizer
    from verl.experimental.agent_loop.agent_loop import DictConfigWrap, _agent_loop_registry
    from verl.trainer.ppo.metric_utils import process_validation_metrics
    from verl.trainer.ppo.v1.trainer_base import PPOTrainer
    from verl.utils.dataset.rl_dataset import RLHFDataset
    from verl.utils.tensordict_utils import list_of_dict_to_tensordict

    from bao.verl.cpu.chat_tokenizer import HF_MODEL_TYPE
    from bao.verl.data import task_from_row
    from tests.bao.verl.fakes import USER_GYM_POLICIES, FakeServer, scripted, user_gym_scripted

    tokenizer = AutoTokenizer.from_pretrained(config.actor_rollout_ref.model.path)
    dataset = RLHFDataset(config.data.val_files, tokenizer, config.data)
    rollout = config.actor_rollout_ref.rollout
    registry = dict(_agent_loop_registry)
    if rollout.agent.agent_loop_config_path:
        for entry in OmegaConf.load(rollout.agent.agent_loop_config_path):
            registry[entry.name] = entry

    async def play(row: dict[str, Any], index: int) -> Any:
        entry = registry[rollout.agent.default_agent_loop]
        functions, gym_path = entry.get("functions_path"), entry.get("gym_path")
        policy = USER_GYM_POLICIES[index % 3]
        if gym_path:  # Telepathy/Turtle: the loop's own lookup (by title, or inline)
            from bao.verl.agent_loop import _user_gym
            from bao.verl.data import user_gym_task_from_row

            gym = _user_gym(gym_path)
            task = user_gym_task_from_row(row, gym.gym, gym.by_title)
            reply = user_gym_scripted(task, policy)
        else:
            from bao.tasks import load_function_tasks

            lookup = {t.id: t for t in load_function_tasks(functions)} if functions else None
            reply = scripted(task_from_row(row, lookup), policy, index)
        loop = hydra.utils.instantiate(
            registry[row.get("agent_name") or rollout.agent.default_agent_loop],
            trainer_config=DictConfigWrap(config),
            server_manager=FakeServer(tokenizer, reply),
            tokenizer=tokenizer,
            processor=None,
            dataset_cls=RLHFDataset,
            data_config=DictConfigWrap(config.data),
            hf_model_type=HF_MODEL_TYPE,
        )
        return await loop.run({"temperature": 0.0}, **row)

    async def play_all() -> list[Any]:
        return [await play(dataset[i], i) for i in range(len(dataset))]

    outputs = asyncio.run(play_all())
    # What the v1 path does with them: each output's as_dict() goes into TransferQueue as one
    # tensordict row, and _validate sums rm_scores and reads extra_fields back per row.
    batch = list_of_dict_to_tensordict([output.as_dict() for output in outputs])
    infos: dict[str, list[Any]] = defaultdict(list)
    infos["reward"] = [float(row.sum()) for row in batch["rm_scores"].unbind(0)]
    for extra in list(batch["extra_fields"]):
        for key, value in extra.get("reward_extra_info", {}).items():
            infos[key].append(value)
    texts = [tokenizer.decode(output.response_ids) for output in outputs]
    PPOTrainer._write_generations(
        inputs=["prompt"] * len(outputs),
        outputs=texts,
        gts=[None] * len(outputs),
        scores=infos["reward"],
        reward_extra_infos_dict=dict(infos),
        dump_path=config.trainer.validation_data_dir,
        global_steps=step,
    )
    sources = [str(dataset[i].get("data_source", "function_gym")) for i in range(len(outputs))]
    uids = [str(i) for i in range(len(outputs))]
    metrics = process_validation_metrics(sources, uids, dict(infos))
    flat = {}
    for source, variables in metrics.items():
        for variable, values in variables.items():
            for name, value in values.items():
                flat[f"val-aux/{source}/{variable}/{name}"] = float(np.asarray(value))
    return flat


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
