"""A transformers rollout backend for verl 0.9.1 (``actor_rollout_ref.rollout.name=hf``).

verl 0.9.1 serves rollouts only from vLLM, SGLang or TensorRT-LLM servers, none of which runs on
a CPU here; its own ``HFRollout`` is synchronous, and synchronous rollouts were removed. This
backend plugs into the same two registries those servers use:

- :class:`HFReplica` (``RolloutReplicaRegistry``): one replica per training rank, which starts a
  Ray actor, :class:`HFServer`, serving ``generate(prompt_ids, sampling_params, request_id)`` ->
  ``TokenOutput`` the way verl's agent loops call vLLM: token ids in, token ids (and their log
  probabilities when asked) out, with temperature, top-p, top-k, a KV cache (``generate``'s
  default) and verl's rule for ``max_tokens``;
- :class:`HFServerAdapter` (``_ROLLOUT_REGISTRY``): the rollout object inside the training worker,
  which receives the trained weights after each step and loads them into the server.

Sleeping, waking and aborting are no-ops: nothing is offloaded on a CPU.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import AsyncIterator, Iterable
from typing import Any, cast

import ray
import torch
from verl.workers.rollout import base as rollout_base
from verl.workers.rollout.base import BaseRollout
from verl.workers.rollout.replica import RolloutReplica, RolloutReplicaRegistry, TokenOutput

log = logging.getLogger(__name__)

ROLLOUT_NAME = "hf"
_SERVER_PREFIX = "bao_hf_server"


def server_name(replica_rank: int, suffix: str = "") -> str:
    """The Ray actor name of a replica's server (the adapter finds it by this name)."""
    return f"{_SERVER_PREFIX}_{replica_rank}{suffix}"


def max_new_tokens(
    sampling_params: dict[str, Any],
    prompt_tokens: int,
    *,
    prompt_length: int,
    response_length: int,
    max_model_len: int,
) -> int:
    """verl's rule (its vLLM server's): an explicit ``max_tokens`` (or SGLang's
    ``max_new_tokens``) wins, else the response budget left in ``prompt_length +
    response_length``; always at least 1 and never past the model's context.

    Pops the key it used from ``sampling_params``."""
    room = max_model_len - prompt_tokens
    if room < 1:
        raise ValueError(
            f"prompt of {prompt_tokens} tokens leaves no room to generate within the "
            f"model's context of {max_model_len} tokens"
        )
    if "max_tokens" in sampling_params:
        wanted = int(sampling_params.pop("max_tokens"))
    elif "max_new_tokens" in sampling_params:
        wanted = int(sampling_params.pop("max_new_tokens"))
    else:
        wanted = min(response_length, prompt_length + response_length - prompt_tokens)
    return max(1, min(wanted, room))


class HFServer:
    """One rollout server: a transformers causal LM generating token ids on CPU.

    Runs as an async Ray actor; ``generate`` calls are served one at a time in a thread
    (the model's forward passes would compete for the same cores anyway)."""

    def __init__(self, config: Any, model_config: Any, replica_rank: int) -> None:
        from transformers import AutoModelForCausalLM

        self.config = config
        self.replica_rank = replica_rank
        path = getattr(model_config, "local_path", None) or model_config.path
        self.model: Any = AutoModelForCausalLM.from_pretrained(
            path,
            torch_dtype=torch.float32,
            attn_implementation="sdpa",
            trust_remote_code=bool(getattr(model_config, "trust_remote_code", False)),
        )
        self.model.eval()  # type: ignore[no-untyped-call]  # transformers' nn.Module is untyped
        generation = self.model.generation_config
        eos = generation.eos_token_id if generation.eos_token_id is not None else []
        self.stop_ids: list[int] = [eos] if isinstance(eos, int) else list(eos)
        self.pad_id = generation.pad_token_id
        if self.pad_id is None:
            self.pad_id = self.stop_ids[0] if self.stop_ids else 0
        self.max_model_len = int(
            config.max_model_len or (config.prompt_length + config.response_length)
        )
        self.global_steps: int | None = None
        self._lock = threading.Lock()
        self.script = _load_script(path, self.stop_ids)
        self._requests = 0
        torch.manual_seed(int(getattr(config, "seed", 0)) + replica_rank)

    async def generate(
        self,
        prompt_ids: list[int],
        sampling_params: dict[str, Any],
        request_id: str,
        image_data: Any = None,
        video_data: Any = None,
        **kwargs: Any,
    ) -> TokenOutput:
        if image_data is not None or video_data is not None:
            raise ValueError("the hf rollout backend serves text only")
        params = dict(sampling_params)
        limit = max_new_tokens(
            params,
            len(prompt_ids),
            prompt_length=self.config.prompt_length,
            response_length=self.config.response_length,
            max_model_len=self.max_model_len,
        )
        self._requests += 1
        if self.script and self._requests % 2 == 1:
            # smoke.scripted_policy: odd requests play the script, even ones the model.
            reply = self.script[(self._requests // 2) % len(self.script)][:limit]
            return await asyncio.to_thread(self._score, list(prompt_ids), reply, params)
        return await asyncio.to_thread(self._generate, list(prompt_ids), params, limit)

    def _score(
        self, prompt_ids: list[int], reply: list[int], params: dict[str, Any]
    ) -> TokenOutput:
        """A scripted reply, with the model's log probabilities of its tokens when asked."""
        log_probs: list[float] | None = None
        if params.get("logprobs"):
            inputs = torch.tensor([prompt_ids + reply], dtype=torch.long)
            with self._lock, torch.inference_mode():
                logits = self.model(inputs).logits[0, len(prompt_ids) - 1 : -1].float()
            chosen = torch.log_softmax(logits, dim=-1).gather(1, torch.tensor(reply)[:, None])
            log_probs = chosen[:, 0].tolist()
        finished = bool(reply) and reply[-1] in self.stop_ids
        return TokenOutput(
            token_ids=reply,
            log_probs=log_probs,
            stop_reason="completed" if finished else None,
            extra_fields={"global_steps": self.global_steps},
        )

    def _generate(self, prompt_ids: list[int], params: dict[str, Any], limit: int) -> TokenOutput:
        temperature = float(params.get("temperature", 1.0) or 0.0)
        top_p = float(params.get("top_p", 1.0) or 1.0)
        top_k = int(params.get("top_k", -1) or -1)
        sample = temperature > 0.0 and params.get("do_sample", True) is not False
        options: dict[str, Any] = {
            "max_new_tokens": limit,
            "do_sample": sample,
            "use_cache": True,
            "eos_token_id": self.stop_ids or None,
            "pad_token_id": self.pad_id,
            "return_dict_in_generate": True,
            "output_logits": True,
        }
        penalty = float(params.get("repetition_penalty", 1.0) or 1.0)
        if penalty != 1.0:
            options["repetition_penalty"] = penalty
        if sample:  # top_k 0 (verl's -1): no top-k filter
            options.update(temperature=temperature, top_p=top_p, top_k=top_k if top_k > 0 else 0)
        else:  # greedy: leave the model's own sampling defaults out of it
            options.update(temperature=None, top_p=None, top_k=None)
        inputs = torch.tensor([prompt_ids], dtype=torch.long)
        with self._lock, torch.inference_mode():
            output = self.model.generate(inputs, attention_mask=torch.ones_like(inputs), **options)
        tokens = output.sequences[0, len(prompt_ids) :].tolist()
        # generate() pads finished sequences only in a batch; one sequence stops at its EOS.
        finished = bool(tokens) and tokens[-1] in self.stop_ids
        log_probs: list[float] | None = None
        if params.get("logprobs"):
            # The raw model's log probability of each token it chose (vLLM's default mode).
            log_probs = [
                float(torch.log_softmax(logits[0].float(), dim=-1)[token])
                for logits, token in zip(output.logits, tokens, strict=False)
            ]
        return TokenOutput(
            token_ids=tokens,
            log_probs=log_probs,
            stop_reason="completed" if finished else None,
            extra_fields={"global_steps": self.global_steps},
        )

    async def load_weights(self, weights: dict[str, torch.Tensor], global_steps: int | None) -> int:
        """Loads the trained weights; returns how many tensors matched the model's."""
        own = self.model.state_dict()
        matched = {name: tensor for name, tensor in weights.items() if name in own}
        if not matched:
            raise ValueError(
                "none of the pushed weights matches the rollout model's parameters "
                f"(first pushed: {sorted(weights)[:3]})"
            )
        with self._lock:
            self.model.load_state_dict(matched, strict=False)
        if global_steps is not None:
            self.global_steps = global_steps
        return len(matched)

    async def get_server_address(self) -> tuple[str, int]:
        return str(ray.util.get_node_ip_address()), 0  # type: ignore[no-untyped-call]

    # Memory and request management a GPU server needs; nothing to do on a CPU.
    async def wake_up(self) -> None:
        return None

    async def sleep(self) -> None:
        return None

    async def abort_all_requests(self, reject_request: bool = False) -> dict[str, Any]:
        return {"aborted_count": 0, "request_ids": []}

    async def resume_generation(self) -> None:
        return None

    async def clear_kv_cache(self) -> None:
        return None

    async def release_kv_cache(self) -> None:
        return None

    async def resume_kv_cache(self) -> None:
        return None

    async def start_profile(self, **kwargs: Any) -> None:
        return None

    async def stop_profile(self) -> None:
        return None

    async def wait_for_requests_to_drain(self) -> None:
        return None


def _load_script(model_path: str, stop_ids: list[int]) -> list[list[int]]:
    """The scripted replies of ``smoke.scripted_policy`` as token ids (each ending with the
    model's stop token), or none when the run has no script."""
    from bao.verl.cpu.smoke import SCRIPT_VARIABLE, scripted_replies

    gym = os.environ.get(SCRIPT_VARIABLE)
    if not gym:
        return []
    from transformers import AutoTokenizer

    texts = scripted_replies(gym)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    stop = stop_ids[:1]
    return [list(tokenizer.encode(text, add_special_tokens=False)) + stop for text in texts]


class HFReplica(RolloutReplica):
    """A rollout replica served by :class:`HFServer`, next to the training ranks (hybrid)."""

    async def launch_servers(self) -> None:
        name = server_name(self.replica_rank, self.name_suffix)
        # num_cpus=0: the server shares the cores of the ranks it serves; asking Ray for a
        # core of its own would leave none for the training workers on a small machine.
        server: Any = (
            ray.remote(HFServer)
            .options(name=name, num_cpus=0, max_concurrency=self.max_concurrency)
            .remote(
                config=self.config, model_config=self.model_config, replica_rank=self.replica_rank
            )
        )
        address, _ = await server.get_server_address.remote()
        self.servers = [server]
        self._server_handle = server
        self._server_address = f"{address}:{name}"

    def rollout_worker_use_gpu(self) -> bool:
        return False


class HFServerAdapter(BaseRollout):
    """The rollout inside a training worker: hands the trained weights to its replica's server."""

    def __init__(self, config: Any, model_config: Any, device_mesh: Any, *args: Any, **kwargs: Any):
        super().__init__(config, model_config, device_mesh)
        world = (
            self.config.tensor_model_parallel_size
            * self.config.data_parallel_size
            * self.config.pipeline_model_parallel_size
        )
        rank = int(os.environ.get("RANK", "0"))
        self.replica_rank = rank // world
        self.is_leader = rank % world == 0
        self.sleep_level = 0

    async def resume(self, tags: list[str]) -> None:
        return None

    async def release(self) -> None:
        return None

    async def update_weights(
        self,
        weights: Iterable[tuple[str, torch.Tensor]] | AsyncIterator[tuple[str, torch.Tensor]],
        wire_format: str = "named_tensors",
        **kwargs: Any,
    ) -> None:
        if wire_format != "named_tensors":
            raise ValueError(f"the hf rollout backend takes named tensors, not {wire_format!r}")
        state: dict[str, torch.Tensor] = {}
        if isinstance(weights, AsyncIterator):
            async for name, tensor in weights:
                state[name] = _full_cpu_tensor(tensor)
        else:
            for name, tensor in weights:
                state[name] = _full_cpu_tensor(tensor)
        if not self.is_leader:
            return
        server: Any = _named_actor(server_name(self.replica_rank))
        loaded = await server.load_weights.remote(state, kwargs.get("global_steps"))
        log.info("pushed %d of %d trained tensors to the hf rollout server", loaded, len(state))


def _named_actor(name: str) -> Any:
    # Ray's stubs declare get_actor as never returning (a decorator's signature), which would
    # make everything after the call unreachable to the type checker.
    get_actor: Any = ray.get_actor
    return get_actor(name)


def _full_cpu_tensor(tensor: Any) -> torch.Tensor:
    full = tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor
    return cast(torch.Tensor, full.detach().to("cpu", copy=True))


def register() -> None:
    """Adds ``hf`` to verl's rollout registries (idempotent)."""
    RolloutReplicaRegistry.register(ROLLOUT_NAME, lambda: HFReplica)
    # verl keeps its adapters in a module-level dict with no registration function.
    rollout_base._ROLLOUT_REGISTRY[(ROLLOUT_NAME, "async")] = f"{__name__}.HFServerAdapter"


register()
