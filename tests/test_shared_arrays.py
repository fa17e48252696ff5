"""Large numpy arrays reach process workers through shared memory, and nothing is left."""

from __future__ import annotations

import gc
import os
import time

import pytest

np = pytest.importorskip("numpy")

import anyexec  # noqa: E402
from anyexec import _shared  # noqa: E402
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


@pytest.fixture(params=["process", "loky"])
def ex(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    if request.param == "loky":
        pytest.importorskip("anyexec_loky")
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
