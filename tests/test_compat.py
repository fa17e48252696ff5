"""Each private upstream attribute anyexec relies on (anyexec._compat) is still there.

These fail when a new CPython, loky or distributed renames what a helper reaches into, so
the break shows here, by name, instead of as a hang or a wrong error elsewhere.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os

import pytest

from anyexec import _compat


def test_future_cancel_notifies_waiters() -> None:
    fut: cf.Future[int] = cf.Future()
    waiting = cf.wait([fut], timeout=0)
    assert waiting.not_done == {fut}
    assert _compat.cancel_and_notify(fut)
    done, _ = cf.wait([fut], timeout=5)  # returns at once only if the waiters were told
    assert fut in done and fut.cancelled()
    finished: cf.Future[int] = cf.Future()
    finished.set_result(1)
    assert not _compat.cancel_and_notify(finished)


def test_process_pool_internals() -> None:
    ctx = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(1, mp_context=ctx) as pool:
        assert pool.submit(int).result(timeout=60) == 0
        assert len(_compat.pool_processes(pool)) == 1
        assert _compat.process_pool_context(pool) is ctx
        assert hasattr(pool, "_pending_work_items")
        assert _compat.process_pool_pending(pool) == []
    assert _compat.process_pool_pending(cf.ThreadPoolExecutor(1)) == []


def test_thread_exit_hooks_run_last_registered_first() -> None:
    import threading

    assert callable(threading._register_atexit)
    assert isinstance(threading._threading_atexits, list)  # run reversed by _shutdown
    ran: list[int] = []
    _compat.register_thread_exit(lambda: ran.append(1))
    threading._threading_atexits[-1]()  # what threading._shutdown does with it
    assert ran == [1]
    threading._threading_atexits.pop()  # not at this test run's exit


def test_process_pool_forget_cancelled() -> None:
    import time

    ctx = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(1, mp_context=ctx) as pool:
        pool.submit(int).result(timeout=60)
        busy = pool.submit(time.sleep, 1)
        queued = [pool.submit(int) for _ in range(5)]
        cancelled = [f for f in queued if f.cancel()]
        assert cancelled  # some were still in the pool's own queue
        _compat.process_pool_forget_cancelled(pool)
        left = [w.future for w in pool._pending_work_items.values()]
        assert busy in left and not any(f in left for f in cancelled)
        for fut in left:
            if fut is busy or not fut.cancelled():
                continue  # running: the pool had handed it on to its call queue already
            # A cancelled item's future is now a stand-in a broken pool may fail harmlessly.
            assert isinstance(fut, _compat._Forgotten)
            fut.set_exception(RuntimeError("the pool broke"))  # ignored, no error
        done, _ = cf.wait(cancelled, timeout=0)
        assert set(done) == set(cancelled)  # their waiters were told
        assert busy.result(timeout=60) is None  # the pool still works
        assert pool.submit(int).result(timeout=60) == 0


def test_forkserver_preload_list() -> None:
    from multiprocessing import forkserver

    assert hasattr(forkserver._forkserver, "_preload_modules")
    assert isinstance(_compat.forkserver_preload(), list)


def test_loky_flags() -> None:
    loky = pytest.importorskip("loky")
    pool = loky.get_reusable_executor(max_workers=1)
    assert pool.submit(int).result(timeout=60) == 0
    assert not _compat.loky_pool_unusable(pool)


def test_distributed_cluster_status_hook() -> None:
    pytest.importorskip("distributed")
    import distributed.deploy.cluster
    import distributed.deploy.spec

    assert callable(distributed.deploy.cluster.Cluster._update_worker_status)
    assert "_update_worker_status" in vars(distributed.deploy.spec.SpecCluster)


def test_distributed_done_callback_coroutine() -> None:
    pytest.importorskip("distributed")
    import inspect

    from anyexec import _compat

    done_callback = _compat.dask_done_callback()
    assert done_callback is not None, "distributed.client.done_callback is gone"
    assert inspect.iscoroutinefunction(done_callback)
    assert list(inspect.signature(done_callback).parameters)[:2] == ["future", "callback"]


_UNLINK_CHECK = """
import multiprocessing, os
from anyexec import _compat
lock = multiprocessing.get_context("spawn").Lock()
path = "/dev/shm/sem." + lock._semlock.name.lstrip("/")
assert os.path.exists(path), path
assert _compat.unlink_named_semaphores() >= 1
assert not os.path.exists(path), path
lock.acquire()  # the lock itself still works: only its name is gone
lock.release()
assert _compat.unlink_named_semaphores() == 0  # each finalizer runs once
"""


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="named semaphores live in /dev/shm")
def test_unlink_named_semaphores() -> None:
    # In a process of its own: it unlinks every semaphore name of the process, which a
    # pool of this test process may still need to start a worker.
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", _UNLINK_CHECK], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr


def test_threading_register_atexit_runs_before_thread_pools_close() -> None:
    import subprocess
    import sys

    code = (
        "import concurrent.futures as cf\n"
        "from anyexec import _compat\n"
        "pool = cf.ThreadPoolExecutor(1)\n"
        "_compat.register_thread_exit(lambda: print(pool.submit(abs, -7).result()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "7", out.stderr
    import threading

    assert callable(threading._register_atexit)  # type: ignore[attr-defined]
