"""Every reach into a private attribute of CPython, loky or distributed, in one place.

Upstream may rename any of these in a release; each helper says which upstream version it
was checked against, and ``tests/test_compat.py`` fails when an installed version no longer
has what a helper relies on. Nothing here imports loky or distributed: the objects are
handed in by the backend that owns them.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
from typing import Any

__all__ = [
    "cancel_and_notify",
    "dask_done_callback",
    "forkserver_preload",
    "loky_pool_unusable",
    "pool_processes",
    "process_pool_context",
    "process_pool_forget_cancelled",
    "process_pool_pending",
    "register_thread_exit",
    "unlink_named_semaphores",
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


def forkserver_preload() -> list[str]:
    """The modules the forkserver will preload (set by ``set_forkserver_preload``).
    CPython 3.10-3.13 ``multiprocessing.forkserver._forkserver._preload_modules``."""
    try:
        from multiprocessing import forkserver

        return list(getattr(forkserver._forkserver, "_preload_modules", None) or ["__main__"])
    except (ImportError, AttributeError):
        return ["__main__"]


def loky_pool_unusable(pool: Any) -> bool:
    """Whether a loky pool broke (a worker died) or was shut down, so a new one must be
    started. loky 3.4-3.7: ``_flags.broken``, ``_flags.shutdown``."""
    flags = pool._flags
    return bool(flags.broken or flags.shutdown)


def update_worker_status_removal(cluster: Any, op: str, msg: Any) -> None:
    """``distributed.deploy.cluster.Cluster._update_worker_status`` (distributed
    2024.x-2026.8), called past ``SpecCluster``'s override so a removed worker does not
    close its nanny (see ``anyexec_dask``)."""
    import distributed.deploy.cluster

    distributed.deploy.cluster.Cluster._update_worker_status(cluster, op, msg)  # type: ignore[no-untyped-call]


def dask_done_callback() -> Any:
    """``distributed.client.done_callback`` (distributed 2022.x-2026.8): the coroutine,
    run on the client's event loop, that waits for a future and then calls a function with
    it (what ``Future.add_done_callback`` schedules before handing the call to a thread).
    None where this distributed has none; the caller then falls back to
    ``add_done_callback``."""
    import distributed.client

    return getattr(distributed.client, "done_callback", None)


def unlink_named_semaphores() -> int:
    """Unlink now the named semaphores this process created for ``multiprocessing``
    objects of the spawn and forkserver contexts (queues, locks, events), as the process
    would at a normal exit; returns how many. For a process about to be killed: its
    ``multiprocessing`` resource tracker, killed with it, could not unlink them, and each
    would stay in ``/dev/shm``. Only these finalizers run: others (joining a queue's feeder
    thread) could block. CPython 3.10-3.13: ``multiprocessing.util._finalizer_registry``
    holds ``Finalize`` objects; a semaphore's callback is ``SemLock._cleanup``."""
    import multiprocessing.synchronize
    import multiprocessing.util

    cleanup = multiprocessing.synchronize.SemLock._cleanup  # type: ignore[attr-defined]
    done = 0
    for finalizer in list(multiprocessing.util._finalizer_registry.values()):  # type: ignore[attr-defined]
        if getattr(finalizer, "_callback", None) is cleanup:
            with contextlib.suppress(Exception):  # already unlinked: nothing to do
                finalizer()
                done += 1
    return done


def register_thread_exit(fn: Any) -> None:
    """Run ``fn`` when ``threading._shutdown`` starts, before non-daemon threads are joined
    and before any ``atexit`` function; hooks run last-registered first. It is how the
    standard pools learn of interpreter exit (``concurrent.futures.thread._python_exit``).
    CPython 3.10-3.13 ``threading._register_atexit``; raises RuntimeError once shutdown
    began."""
    import threading

    threading._register_atexit(fn)  # type: ignore[attr-defined]


class _Forgotten(cf.Future):  # type: ignore[type-arg]
    """Stands in for a cancelled future in a pool's work item: already cancelled, and
    deaf to the ``set_exception`` a broken pool sends every pending item."""

    def __init__(self) -> None:
        super().__init__()
        self.cancel()

    def set_exception(self, exception: BaseException | None) -> None:
        pass


def process_pool_forget_cancelled(executor: cf.Executor) -> None:
    """Before a ``ProcessPoolExecutor``'s workers are terminated: on CPython 3.10 and 3.11
    the broken pool then calls ``set_exception`` on every pending item's future, which
    raises ``InvalidStateError`` (a traceback from the pool's thread) for a cancelled one.
    Each cancelled future's waiters are told now, and the work item gets a stand-in the
    pool may dequeue or fail without harm. CPython 3.10-3.13: ``_pending_work_items``, a
    dict id -> _WorkItem whose ``future`` attribute the pool's thread reads."""
    items = getattr(executor, "_pending_work_items", None)
    if isinstance(items, dict):
        for item in list(items.values()):
            fut = item.future
            if fut.cancelled() and not isinstance(fut, _Forgotten):
                with contextlib.suppress(RuntimeError):  # already told
                    fut.set_running_or_notify_cancel()
                item.future = _Forgotten()
