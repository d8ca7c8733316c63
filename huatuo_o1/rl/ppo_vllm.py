"""PPO rollouts through vLLM, colocated (`RL_stage2.py --use_vllm True`).

Each training process runs its own vLLM engine on its GPU (`distributed_executor_backend=
"external_launcher"`, as trl's colocated GRPO does), beside the DeepSpeed engine:

- before each rollout `wake_up` gives vLLM its memory back and loads the policy's current weights
  into it (gathered one parameter at a time under ZeRO-3: a collective every rank joins);
- `generate` samples as `generate` does in the trainer: the same temperature, top-k/top-p off,
  at most `--response_length` new tokens, stopping only at the stop token (`--stop_token` /
  `--stop_token_id`; the tokenizer's own eos is ignored when it is not the stop token);
- after the rollout `sleep` releases its weights and KV cache (sleep level 2) for the update
  (`--vllm_enable_sleep_mode`, on by default).

The rollout log-probs then come from a forward pass of the training policy (the trainer), not
from vLLM's sampler, so the PPO ratio compares like with like.

Needs the vllm package (requirements-vllm.txt) and a GPU; it is imported only with --use_vllm.
"""

from __future__ import annotations

import contextlib
import logging
import os

import torch

from huatuo_o1.io import InputError

log = logging.getLogger(__name__)


def _strip_left_pads(row: list[int], pad: int) -> list[int]:
    start = 0
    while start < len(row) and row[start] == pad:
        start += 1
    return row[start:]


class ColocatedVLLM:
    """One vLLM engine in this process, generating the rollouts of the policy being trained."""

    def __init__(self, policy, args, tokenizer):
        try:
            from vllm import LLM
        except ImportError as err:
            raise InputError(
                "--use_vllm needs the vllm package on a GPU node: pip install -c constraints.txt "
                "-r requirements-vllm.txt"
            ) from err
        if not torch.cuda.is_available():
            raise InputError("--use_vllm needs a CUDA GPU (vLLM's colocated engine)")
        from accelerate import PartialState

        state = PartialState()
        os.environ.setdefault("RANK", str(state.process_index))
        os.environ.setdefault("LOCAL_RANK", str(state.local_process_index))
        os.environ.setdefault("WORLD_SIZE", str(state.num_processes))
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", "29512")
        self.pad = tokenizer.pad_token_id
        self.stop_token_id = policy.generation_config.eos_token_id  # the trainer set it to the stop token
        self.temperature = args.temperature
        self.max_tokens = args.response_length
        self.sleep_mode = args.vllm_enable_sleep_mode
        self.llm = LLM(
            model=policy.name_or_path,
            tokenizer=policy.name_or_path,
            dtype=str(policy.dtype).removeprefix("torch."),
            gpu_memory_utilization=args.vllm_gpu_memory_utilization,
            enable_sleep_mode=self.sleep_mode,
            distributed_executor_backend="external_launcher",
            seed=args.seed + state.process_index,
            max_num_batched_tokens=4096,
            trust_remote_code=False,
        )
        self.asleep = False
        self.sleep()
        state.wait_for_everyone()

    def sampling_params(self):
        from vllm import SamplingParams

        stop = [self.stop_token_id] if self.stop_token_id is not None else None
        return SamplingParams(
            n=1,
            temperature=self.temperature,
            top_p=1.0,
            top_k=-1,
            max_tokens=self.max_tokens,
            stop_token_ids=stop,
            ignore_eos=True,  # stop only at the stop token, as the trainer's generate does
            skip_special_tokens=False,
            detokenize=False,
        )

    def _vllm_model(self):
        return self.llm.llm_engine.model_executor.driver_worker.model_runner.model

    def load_weights(self, model, accelerator) -> None:
        """The policy's current weights into vLLM (a gather per parameter under ZeRO-3, every rank)."""
        plugin = getattr(accelerator.state, "deepspeed_plugin", None)
        zero3 = plugin is not None and plugin.zero_stage == 3
        target = self._vllm_model()
        policy = accelerator.unwrap_model(model).policy
        for name, param in policy.named_parameters():
            if zero3:
                import deepspeed

                gather = deepspeed.zero.GatheredParameters([param])
            else:
                gather = contextlib.nullcontext()
            with gather:
                target.load_weights([(name, param.data)])
        self.llm.reset_prefix_cache()

    def wake_up(self, model, accelerator) -> None:
        """Memory back to vLLM and the current policy weights loaded (before each rollout)."""
        if self.asleep:
            torch.cuda.empty_cache()
            self.llm.wake_up(tags=["weights"])
        self.load_weights(model, accelerator)
        if self.asleep:
            self.llm.wake_up(tags=["kv_cache"])
        self.asleep = False

    def sleep(self) -> None:
        """Release vLLM's weights and KV cache for the update (sleep mode only)."""
        if self.sleep_mode and not self.asleep:
            self.llm.sleep(level=2)
            self.asleep = True

    @torch.no_grad()
    def generate(self, queries: torch.Tensor) -> torch.Tensor:
        """(B, P + T') prompt + response ids, responses right-padded with the pad (as the trainer's
        batch_generation); queries: (B, P) left-padded."""
        prompts = [{"prompt_token_ids": _strip_left_pads(q, self.pad)} for q in queries.tolist()]
        outputs = self.llm.generate(prompts, sampling_params=self.sampling_params(), use_tqdm=False)
        responses = [list(o.outputs[0].token_ids) for o in outputs]
        width = max(1, max(map(len, responses)))
        out = torch.full((queries.shape[0], queries.shape[1] + width), self.pad, dtype=queries.dtype)
        out[:, : queries.shape[1]] = queries.cpu()
        for i, r in enumerate(responses):
            out[i, queries.shape[1] : queries.shape[1] + len(r)] = torch.tensor(r, dtype=queries.dtype)
        return out.to(queries.device)
