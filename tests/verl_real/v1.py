"""Ray-free stand-ins that let verl 0.9.1's V1 trainer run its own `_validate` in this process.

What stands in is Ray only:
- TransferQueue (`import transfer_queue as tq` in verl's V1 trainer, replay buffer and agent loop)
  runs for real: its controller, its SimpleStorage units and its client, talking over ZMQ on the
  loopback, as `tq.init(config.transfer_queue)` builds them; `in_process_transfer_queue` only makes
  the Ray actors it starts plain objects of this process (TransferQueue uses Ray to place and find
  them, not to move data).
- The agent loop: `in_process_agent_loop_manager` is verl's AgentLoopManagerTQ whose workers are
  verl's AgentLoopWorkerTQ objects in this process; a dispatch runs the worker's coroutine and then
  its background agent loops to the end (they put the rollouts into TransferQueue).

Everything else is verl's code: the trainer's `_validate`, its replay buffer, the agent loop with its
tokenization and TransferQueue layout, `_compute_reward_colocate`, the reward loop.
"""

from __future__ import annotations

import asyncio
from contextlib import contextmanager
from types import SimpleNamespace


class _InProcessActor:
    """A Ray actor handle for an object of this process: `handle.method.remote(...)` calls it."""

    def __init__(self, obj):
        self._obj = obj

    def __getattr__(self, name):
        return SimpleNamespace(remote=getattr(self._obj, name))


def _in_process(actor_class):
    """A Ray actor class whose `.options(...).remote(...)` builds the plain object here."""
    cls = actor_class.__ray_metadata__.modified_class

    def remote(*args, **kwargs):
        return _InProcessActor(cls(*args, **kwargs))

    return SimpleNamespace(options=lambda **_: SimpleNamespace(remote=remote), remote=remote)


@contextmanager
def in_process_transfer_queue(monkeypatch, conf):
    """TransferQueue started by `tq.init(conf)` with its actors in this process; closed on exit."""
    import transfer_queue as tq
    from transfer_queue import interface
    from transfer_queue.storage.bootstrap import simple_storage_bootstrap
    from transfer_queue.utils import zmq_utils

    def get_actor(*_, **__):
        raise ValueError("no such actor")  # Ray's answer before the controller exists

    ray = SimpleNamespace(
        get=lambda refs, timeout=None: refs,  # the "remote" calls already returned their values
        get_actor=get_actor,
        kill=lambda *_: None,
        util=SimpleNamespace(get_node_ip_address=lambda: "127.0.0.1"),
    )
    for module in (interface, zmq_utils):
        monkeypatch.setattr(module, "ray", ray)
    monkeypatch.setattr(interface, "TransferQueueController", _in_process(interface.TransferQueueController))
    monkeypatch.setattr(
        simple_storage_bootstrap, "SimpleStorageUnit", _in_process(simple_storage_bootstrap.SimpleStorageUnit)
    )
    monkeypatch.setattr(
        simple_storage_bootstrap,
        "get_node_round_robin_scheduling_strategies",
        lambda n, **_: [SimpleNamespace(node_id="this process")] * n,
    )
    tq.init(conf)
    try:
        yield tq
    finally:
        tq.close()


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
    manager.agent_loop_workers = [_InProcessActor(w) for w in workers]
    return manager
