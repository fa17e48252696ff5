"""Every reach into a private attribute of CPython, loky or distributed, in one place.

Upstream may rename any of these in a release; each helper says which upstream version it
was checked against, and ``tests/test_compat.py`` fails when an installed version no longer
has what a helper relies on. Nothing here imports loky or distributed: the objects are
handed in by the backend that owns them.
"""

from __future__ import annotations

import concurrent.futures as cf
from typing import Any

__all__ = [
    "cancel_and_notify",
    "forkserver_preload",
    "loky_pool_unusable",
    "pool_processes",
    "process_pool_context",
    "process_pool_pending",
    "register_before_pool_exit",
    "thread_pool_add_workers",
    "update_worker_status_removal",
]


def cancel_and_notify(fut: cf.Future[Any]) -> bool:
    """Cancel ``fut`` and tell its waiters (``wait``, ``as_completed``), as a pool does when
    it dequeues a cancelled future (``set_running_or_notify_cancel``), for futures no pool
    will dequeue. CPython 3.10-3.13 ``concurrent.futures._base``: ``_condition``,
    ``_state``, ``_waiters``, ``CANCELLED``, ``CANCELLED_AND_NOTIFIED``."""
    if not cf.Future.cancel(fut):
        return False
    base = cf._base
    with fut._condition:  # type: ignore[attr-defined]
        if fut._state == base.CANCELLED:  # type: ignore[attr-defined]
            fut._state = base.CANCELLED_AND_NOTIFIED  # type: ignore[attr-defined]
            for waiter in fut._waiters:  # type: ignore[attr-defined]
                waiter.add_cancelled(fut)
    return True


def pool_processes(executor: cf.Executor) -> list[Any]:
    """The worker processes of a ``ProcessPoolExecutor`` (or loky's subclass of it).
    CPython 3.10-3.13 and loky 3.7: ``_processes``, a dict pid -> Process, or None."""
    return list((getattr(executor, "_processes", None) or {}).values())


def process_pool_context(executor: cf.Executor) -> Any:
    """The multiprocessing context a ``ProcessPoolExecutor`` starts workers with.
    CPython 3.10-3.13: ``_mp_context``."""
    return getattr(executor, "_mp_context", None)


def process_pool_pending(executor: cf.Executor) -> list[cf.Future[Any]]:
    """Futures a ``ProcessPoolExecutor`` has not finished, for ``abort``; empty for other
    pools. CPython 3.10-3.13: ``_pending_work_items``, a dict id -> _WorkItem(.future)."""
    items = getattr(executor, "_pending_work_items", None)
    if isinstance(items, dict):
        return [w.future for w in list(items.values())]
    return []


def thread_pool_add_workers(executor: cf.ThreadPoolExecutor, workers: int) -> None:
    """Raise (or lower) a ``ThreadPoolExecutor``'s thread cap: it starts a thread on submit
    while it has fewer than ``_max_workers`` (CPython 3.10-3.13), so raising the cap
    replaces a thread abandoned to a task past its ``task_timeout``."""
    executor._max_workers += workers  # type: ignore[attr-defined]


def forkserver_preload() -> list[str]:
    """The modules the forkserver will preload (set by ``set_forkserver_preload``).
    CPython 3.10-3.13 ``multiprocessing.forkserver._forkserver._preload_modules``."""
    try:
        from multiprocessing import forkserver

        return list(getattr(forkserver._forkserver, "_preload_modules", None) or ["__main__"])
    except (ImportError, AttributeError):
        return ["__main__"]


def loky_pool_unusable(pool: Any) -> bool:
    """Whether loky's reusable executor broke (a worker died) or was shut down, so a new
    one must be asked for. loky 3.4-3.7: ``_flags.broken``, ``_flags.shutdown``."""
    flags = pool._flags
    return bool(flags.broken or flags.shutdown)


def update_worker_status_removal(cluster: Any, op: str, msg: Any) -> None:
    """``distributed.deploy.cluster.Cluster._update_worker_status`` (distributed
    2024.x-2026.8), called past ``SpecCluster``'s override so a removed worker does not
    close its nanny (see ``anyexec_dask``)."""
    import distributed.deploy.cluster

    distributed.deploy.cluster.Cluster._update_worker_status(cluster, op, msg)  # type: ignore[no-untyped-call]


def register_before_pool_exit(fn: Any) -> None:
    """Run ``fn`` at interpreter exit *before* ``concurrent.futures`` shuts its thread
    pools (whose ``submit`` then raises "cannot schedule new futures after shutdown"):
    the dask client runs its done-callbacks through such a pool, so waiting at exit for
    pending work must happen before. CPython 3.10-3.13 ``threading._register_atexit``
    (callbacks run last-registered first, in ``threading._shutdown``); plain ``atexit``
    where it is missing."""
    import threading

    register = getattr(threading, "_register_atexit", None)
    if register is None:
        import atexit

        atexit.register(fn)
    else:
        register(fn)
