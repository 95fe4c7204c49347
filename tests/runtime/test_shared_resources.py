"""``SharedResources``: one object per key per process, made once even under threads, closed when the runtime stops."""

from __future__ import annotations

import threading
from typing import Any

from virtuousai.runtime.context import ActionContext, SharedResources
from virtuousai.store.tenant import TenantContext


class Pool:
    made = 0

    def __init__(self) -> None:
        Pool.made += 1
        self.closed = False

    def close(self) -> None:
        self.closed = True


class Broken:
    def close(self) -> None:
        raise RuntimeError("cannot close")


def test_one_object_per_key_made_once_across_threads_and_closed() -> None:
    shared = SharedResources()
    Pool.made = 0
    seen: list[Pool] = []
    barrier = threading.Barrier(8)

    def take() -> None:
        barrier.wait()
        seen.append(shared.get(Pool, Pool))

    threads = [threading.Thread(target=take) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert Pool.made == 1
    assert len({id(pool) for pool in seen}) == 1
    shared.get(Broken, Broken)  # a failing close() is logged, and the others still close
    shared.close()
    assert seen[0].closed
    assert shared.get(Pool, Pool) is not seen[0]  # after close, a new one


def test_every_context_of_one_executor_shares_them() -> None:
    shared = SharedResources()
    tenant = TenantContext(tenant_id="org_a")
    contexts: list[Any] = [ActionContext(run_id=f"run_{i}", tenant=tenant, shared=shared) for i in range(2)]
    assert contexts[0].shared.get(Pool, Pool) is contexts[1].shared.get(Pool, Pool)
    assert ActionContext(run_id="run_x", tenant=tenant).shared is not shared
