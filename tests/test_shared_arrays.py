"""Large numpy arrays reach workers on this machine (process, loky, the embedded dask
cluster) through shared memory, and nothing is left."""

from __future__ import annotations

import gc
import os
import time
from typing import Any

import pytest

np = pytest.importorskip("numpy")

import anyexec  # noqa: E402
from anyexec import _shared  # noqa: E402
from anyexec.builtin.process import ProcessBackend  # noqa: E402
from anyexec.testing import tasks  # noqa: E402

BIG = 300_000  # float64: 2.4 MB, above the 1 MiB threshold


def files(expected: int = 0) -> list[str]:
    """The files in the shared folder, once their count settles at ``expected`` (a chunk's
    done callbacks may still be running for a moment after its result is read)."""
    deadline = time.monotonic() + 10
    while len(os.listdir(_shared.shared_dir())) != expected and time.monotonic() < deadline:
        time.sleep(0.01)
    return os.listdir(_shared.shared_dir())


def fail_on_big(a: object) -> float:
    raise tasks.TaskError("no arrays today")


def getenv(name: str) -> str | None:
    return os.environ.get(name)


def is_memmap(a: object) -> bool:
    return isinstance(a, np.memmap)


@pytest.fixture(params=["process", "loky", "dask"])
def ex(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """Each backend whose workers share this machine's memory; dask's is the embedded
    cluster (tests/test_dask.py checks that a cluster reached by address never shares)."""
    if request.param != "process":
        pytest.importorskip(f"anyexec_{request.param}")
    with anyexec.Executor(request.param, workers=2) as executor:
        yield executor


def test_arrays_travel_shared_and_files_go(ex: anyexec.Executor) -> None:
    arrays = [np.arange(BIG, dtype=float) * i for i in range(6)]
    assert all(ex.map(is_memmap, arrays))  # the worker saw a memory map, not a pickle
    doubled = list(ex.map(tasks.array_double, arrays))
    for a, d in zip(arrays, doubled):
        np.testing.assert_array_equal(d, a * 2)
    assert files() == []


def test_small_arrays_and_opt_out_are_pickled(ex: anyexec.Executor) -> None:
    assert not any(ex.map(is_memmap, [np.zeros(10)]))
    assert not any(ex.map(is_memmap, [np.zeros(BIG)], share_arrays=False))


def test_same_array_many_times_is_written_once(ex: anyexec.Executor) -> None:
    a = np.ones(BIG)
    assert list(ex.map(tasks.array_sum, [a] * 20)) == [float(BIG)] * 20
    assert files() == []


def test_cleanup_after_a_failing_task(ex: anyexec.Executor) -> None:
    with pytest.raises(tasks.TaskError):
        list(ex.map(fail_on_big, [np.ones(BIG)] * 4))
    ex.shutdown(wait=True)
    assert files() == []


def test_cleanup_after_a_dead_worker(ex: anyexec.Executor) -> None:
    with pytest.raises(anyexec.WorkerLost):
        list(ex.map(tasks.exit_process, [np.ones(BIG)] * 3))
    assert files() == []


def test_cleanup_after_shutdown_that_cancels(ex: anyexec.Executor) -> None:
    """Chunks still queued when the executor is shut down with cancel_futures release
    their files too, and what runs finishes first."""
    arrays = [np.full(BIG, float(i)) for i in range(12)]
    it = ex.map(sleep_then_sum, arrays, chunksize=1)
    assert next(it) == 0.0
    ex.shutdown(wait=True, cancel_futures=True)
    assert files() == []


def sleep_then_sum(a: object) -> float:
    time.sleep(0.2)
    return tasks.array_sum(a)


class _NoSharing(ProcessBackend):
    """Processes on this machine that nonetheless say their workers cannot open its
    shared-memory files."""

    def shares_memory(self, executor: object) -> bool:
        return False


class _LocalCluster(ProcessBackend):
    """A "cluster" backend whose workers it knows to be here (as dask's embedded one)."""

    crosses = "cluster"

    def shares_memory(self, executor: object) -> bool:
        return True


class _Cluster(ProcessBackend):
    """A "cluster" backend that keeps the default answer: its workers may be elsewhere."""

    crosses = "cluster"


@pytest.mark.parametrize(
    ("backend", "shared"), [(_NoSharing, False), (_LocalCluster, True), (_Cluster, False)]
)
def test_the_backend_says_whether_its_workers_share_memory(
    backend: type[ProcessBackend], shared: bool
) -> None:
    with anyexec.Executor(backend(), workers=1) as ex:
        assert list(ex.map(is_memmap, [np.ones(BIG)] * 2)) == [shared] * 2
        assert list(ex.map(tasks.array_sum, [np.ones(BIG)] * 2)) == [float(BIG)] * 2
    assert files() == []


def test_shared_array_needs_no_copy() -> None:
    a = anyexec.shared_array((BIG,))
    a[:] = 2.0
    with anyexec.Executor("process", workers=1) as ex:
        assert list(ex.map(tasks.array_sum, [a, a])) == [2.0 * BIG] * 2
    assert len(files(1)) == 1  # the array's own file, until the array goes
    del a
    gc.collect()
    assert files() == []


def test_process_workers_hold_blas_to_their_share_of_cpus() -> None:
    from anyexec.config import available_cpus

    with anyexec.Executor("process", workers=2) as ex:
        got = ex.submit(getenv, "OMP_NUM_THREADS").result(timeout=60)
    assert got == str(max(1, available_cpus() // 2))


def test_files_are_private_whatever_the_umask() -> None:
    old = os.umask(0)
    try:
        made = anyexec.shared_array(BIG)
        store = _shared.SharedStore()
        shared = store.share([(np.ones(BIG),)])
    finally:
        os.umask(old)
    assert shared is not None
    (handle,), keys = shared[0][0], shared[1]
    for path in (made.filename, handle.path):
        assert os.stat(path).st_mode & 0o777 == 0o600, oct(os.stat(path).st_mode)
    assert os.stat(_shared.shared_dir()).st_mode & 0o777 == 0o700
    store.release(keys)


def test_folders_of_dead_owners_are_reaped(tmp_path: object) -> None:
    import subprocess
    import sys

    # A real process that dies by SIGKILL, leaving its folder and an array file behind.
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from anyexec import _shared; a = _shared.shared_array(10); "
            "print(_shared.shared_dir(), flush=True); time.sleep(300)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    left = child.stdout.readline().strip()
    child.kill()
    child.wait(timeout=60)
    assert os.listdir(left)  # the array file stayed behind
    mine = _shared.shared_dir()
    removed = _shared.reap_orphans(os.path.dirname(left))
    assert left in removed and not os.path.exists(left)
    assert os.path.isdir(mine)  # a live owner's folder (ours) is kept


class _MovesAway(ProcessBackend):
    """Its first executor refuses work as broken, and the one replacing it has workers
    that cannot open this machine's shared-memory files."""

    def __init__(self) -> None:
        self.opened: list[object] = []

    def open(self, workers: int, **options: object) -> Any:
        executor = super().open(workers, **options)
        if not self.opened:
            executor.submit = _broken  # type: ignore[method-assign]
        self.opened.append(executor)
        return executor

    def shares_memory(self, executor: object) -> bool:
        return executor is self.opened[0]


def _broken(*args: object, **kwargs: object) -> None:
    from concurrent.futures.process import BrokenProcessPool

    raise BrokenProcessPool("a worker died")


def test_a_replacement_that_cannot_share_gets_the_arrays_themselves() -> None:
    backend = _MovesAway()
    with anyexec.Executor(backend, workers=1) as ex:
        assert list(ex.map(is_memmap, [np.ones(BIG)] * 2, chunksize=2)) == [False, False]
        assert len(backend.opened) == 2
    assert files() == []


# -- the embedded dask cluster: its workers are processes of this user on this machine ------


@pytest.fixture
def dask_ex():  # type: ignore[no-untyped-def]
    pytest.importorskip("anyexec_dask")
    executor = anyexec.Executor("dask", workers=2)
    try:
        yield executor
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


def test_embedded_dask_sends_handles_not_arrays(
    dask_ex: anyexec.Executor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing is scattered and no task is large: the chunks carry shared-memory handles."""
    import distributed

    def no_scatter(*args: object, **kwargs: object) -> None:
        raise AssertionError("an array was scattered over the socket")

    monkeypatch.setattr(distributed.Client, "scatter", no_scatter)
    sent: list[int] = []
    real_map = distributed.Client.map

    def measured_map(self: object, fn: object, *iterables: object, **kwargs: object) -> object:
        import pickle

        sent.extend(len(pickle.dumps(chunk)) for chunk in iterables[0])  # type: ignore[attr-defined]
        return real_map(self, fn, *iterables, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(distributed.Client, "map", measured_map)
    arrays = [np.arange(BIG, dtype=float) * i for i in range(6)]
    assert all(dask_ex.map(is_memmap, arrays))
    assert list(dask_ex.map(tasks.array_sum, arrays)) == [float(a.sum()) for a in arrays]
    assert sent and max(sent) < BIG  # each chunk pickles to a few hundred bytes
    assert files() == []
    dask_ex.shutdown(wait=True)
    assert files() == []


def test_embedded_dask_files_go_when_its_tasks_are_killed(dask_ex: anyexec.Executor) -> None:
    arrays = [np.full(BIG, float(i)) for i in range(8)]
    it = dask_ex.map(sleep_then_sum, arrays, chunksize=1)
    assert next(it) == 0.0
    dask_ex.kill_running()
    with pytest.raises(anyexec.WorkerLost):  # a result being fetched at the kill included
        list(it)
    assert files() == []
    assert list(dask_ex.map(tasks.array_sum, arrays[:2])) == [0.0, float(BIG)]  # still works
    assert files() == []


def test_embedded_dask_files_go_when_its_cluster_dies(dask_ex: anyexec.Executor) -> None:
    """The host subprocess and its workers killed mid-map: once the client gives up
    reconnecting (30 s), every chunk's future fails, and each releases its files."""
    import signal

    arrays = [np.full(BIG, float(i)) for i in range(8)]
    it = dask_ex.map(sleep_then_sum, arrays, chunksize=1)
    assert next(it) == 0.0
    host = dask_ex._pool.inner.host  # type: ignore[union-attr]
    os.killpg(host.pid, signal.SIGKILL)
    with pytest.raises(anyexec.errors.SchedulerLost):
        list(it)
    assert files() == []
