"""Ray-free stand-ins that let verl 0.9.1's V1 trainer run its own `_validate` in this process.

What stands in:
- TransferQueue (`import transfer_queue as tq` in verl's V1 trainer, replay buffer and agent loop):
  `KVStore` keeps each key's tags and its per-sample field values in memory. A put splits a batch
  per sample (nested tensors unbound, dense tensors by row, non-tensor stacks listed) and merges
  the tags; a get packs the selected values with TransferQueue's own
  `AsyncSimpleStorageManager._pack_field_values` (jagged nested tensors, dense scalars, NonTensorStack),
  so verl's code reads the layout TransferQueue's storage hands back.
- Ray around the agent loop: `InProcessAgentLoopManager` is verl's AgentLoopManagerTQ whose workers
  are verl's AgentLoopWorkerTQ objects in this process; a dispatch runs the worker's coroutine and
  then its background agent loops to the end (they put the rollouts into the store).

Everything else is verl's code: the trainer's `_validate`, its replay buffer, the agent loop with its
tokenization and TransferQueue layout, `_compute_reward_colocate`, the reward loop.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from types import SimpleNamespace

import torch


class KVStore:
    """TransferQueue's key-value calls used by verl's V1 trainer, held in this process."""

    def __init__(self):
        self.tags: dict[str, dict[str, dict]] = defaultdict(dict)  # partition -> key -> tag
        self.values: dict[tuple[str, str], dict] = defaultdict(dict)  # (partition, key) -> field -> value

    def init(self, *_, **__):
        return None

    @staticmethod
    def _per_sample(fields, n: int) -> dict[str, list]:
        from tensordict import NonTensorData, NonTensorStack

        out = {}
        for name in fields.keys():
            value = fields.get(name)
            if isinstance(value, torch.Tensor):
                out[name] = list(value.unbind()) if value.is_nested else [value[i] for i in range(n)]
            elif isinstance(value, NonTensorStack):
                out[name] = value.tolist()
            elif isinstance(value, NonTensorData):
                out[name] = [value.data] * n
            else:
                out[name] = list(value)
        return out

    def kv_batch_put(self, keys, partition_id, fields=None, tags=None, data_parser=None):
        from transfer_queue.metadata import KVBatchMeta

        if fields is None and tags is None:
            raise ValueError("Please provide at least one parameter of fields or tags.")
        for i, key in enumerate(keys):
            tag = self.tags[partition_id].setdefault(key, {})
            if tags is not None:
                tag.update(tags[i])
        if fields is not None:
            assert fields.batch_size[0] == len(keys)
            for name, values in self._per_sample(fields, len(keys)).items():
                for key, value in zip(keys, values, strict=True):
                    self.values[(partition_id, key)][name] = value
        return KVBatchMeta(
            keys=list(keys), tags=[self.tags[partition_id][k] for k in keys], partition_id=partition_id
        )

    def kv_put(self, key, partition_id, fields=None, tag=None, data_parser=None):
        if fields is not None:
            from tensordict import NonTensorStack, TensorDict

            fields = TensorDict(
                {
                    k: v.unsqueeze(0) if isinstance(v, torch.Tensor) else NonTensorStack(v)
                    for k, v in fields.items()
                },
                batch_size=[1],
            )
        return self.kv_batch_put([key], partition_id, fields, None if tag is None else [tag])

    async def async_kv_put(self, key, partition_id, fields=None, tag=None, data_parser=None):
        return self.kv_put(key, partition_id, fields, tag)

    async def async_kv_batch_put(self, keys, partition_id, fields=None, tags=None, data_parser=None):
        return self.kv_batch_put(keys, partition_id, fields, tags)

    def kv_list(self, partition_id=None):
        parts = [partition_id] if partition_id is not None else list(self.tags)
        return {p: {k: dict(t) for k, t in self.tags[p].items()} for p in parts}

    def kv_clear(self, keys, partition_id):
        for key in [keys] if isinstance(keys, str) else keys:
            self.tags[partition_id].pop(key, None)
            self.values.pop((partition_id, key), None)

    def kv_batch_get(self, keys, partition_id, select_fields=None):
        from tensordict import TensorDict
        from transfer_queue.storage.managers.simple_storage_manager import AsyncSimpleStorageManager

        keys = [keys] if isinstance(keys, str) else list(keys)
        rows = [self.values[(partition_id, k)] for k in keys]
        names = [select_fields] if isinstance(select_fields, str) else select_fields or list(rows[0])
        names = [n for n in names if all(n in r for r in rows)]  # a field some key lacks: left out
        packed = {n: AsyncSimpleStorageManager._pack_field_values([r[n] for r in rows]) for n in names}
        return TensorDict(packed, batch_size=[len(keys)])


def in_process_agent_loop_manager(monkeypatch, loop, config, llm, reward_handles):
    """verl's AgentLoopManagerTQ with `config.actor_rollout_ref.rollout.agent.num_workers` of verl's
    AgentLoopWorkerTQ in this process, each answered by `llm`; a dispatch runs to completion."""
    from verl.trainer.ppo.v1 import agent_loop_tq

    worker_cls = agent_loop_tq.AgentLoopWorkerTQ.__ray_metadata__.modified_class
    workers = [
        worker_cls(config, llm, None, reward_handles)
        for _ in range(config.actor_rollout_ref.rollout.agent.num_workers)
    ]

    def get(refs):
        results = [loop.run_until_complete(r) for r in refs]
        pending = [t for w in workers for t in w.background_tasks]
        if pending:  # the agent loops each dispatch spawned: run them until they put their rollouts
            loop.run_until_complete(asyncio.gather(*pending))
        return results

    monkeypatch.setattr(agent_loop_tq, "ray", SimpleNamespace(get=get))
    manager = agent_loop_tq.AgentLoopManagerTQ.__new__(agent_loop_tq.AgentLoopManagerTQ)
    manager.agent_loop_workers = [SimpleNamespace(generate_sequences=SimpleNamespace(remote=w.generate_sequences))
                                  for w in workers]  # fmt: skip
    return manager
