"""Faults with real processes and real signals: per-task timeouts, dead workers, retries,
kill_running, Ctrl-C, and open/close cycles that leak nothing."""

from __future__ import annotations

import concurrent.futures as cf
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import anyexec
from anyexec.testing import tasks

psutil = pytest.importorskip("psutil")

PROCESS_BACKENDS = [
    "process",
    pytest.param(
        "loky",
        marks=pytest.mark.skipif(
            not __import__("importlib").util.find_spec("anyexec_loky"),
            reason="anyexec-loky not installed",
        ),
    ),
]


def job(x: int) -> int:
    """200 tasks: 5 hang, 3 kill their worker, the rest double their input."""
    if x % 40 == 7:
        time.sleep(300)
    if x in (13, 101, 177):
        os._exit(3)
    return x * 2


WORKER_BACKENDS = [
    *PROCESS_BACKENDS,
    pytest.param(
        "dask",
        marks=pytest.mark.skipif(
            not __import__("importlib").util.find_spec("anyexec_dask"),
            reason="anyexec-dask not installed",
        ),
    ),
]


@pytest.mark.parametrize("backend", WORKER_BACKENDS)
def test_hangs_and_crashes_cost_only_their_own_tasks(backend: str) -> None:
    with anyexec.Executor(backend, workers=2) as ex:
        out = list(ex.map(job, range(200), task_timeout=1, retries=1, return_exceptions=True))
    good = {i: o for i, o in enumerate(out) if not isinstance(o, Exception)}
    errors = {i: type(o) for i, o in enumerate(out) if isinstance(o, Exception)}
    assert len(good) == 192 and all(o == i * 2 for i, o in good.items()), {
        i: repr(o)[:300] for i, o in enumerate(out) if isinstance(o, Exception)
    }
    assert {i for i, t in errors.items() if t is anyexec.TaskTimeout} == {7, 47, 87, 127, 167}
    assert {i for i, t in errors.items() if t is anyexec.WorkerLost} == {13, 101, 177}


def test_retries_unordered_and_async() -> None:
    """The retry path of unordered and async maps: only the task that kills its worker
    fails, each other result arrives."""
    import anyio

    xs = [x for x in range(40) if x % 40 != 7]  # 13 kills its worker

    def check(out: list[object]) -> None:
        lost = [x for x, o in zip(xs, out) if isinstance(o, anyexec.WorkerLost)]
        assert lost == [13] and all(o == x * 2 for x, o in zip(xs, out) if x != 13), out

    with anyexec.Executor("process", workers=2) as ex:
        out = list(
            ex.map(_tagged, xs, ordered=False, retries=1, return_exceptions=True, chunksize=4)
        )
        errors = [o for o in out if isinstance(o, Exception)]
        assert len(errors) == 1 and isinstance(errors[0], anyexec.WorkerLost), out
        got = dict(o for o in out if not isinstance(o, Exception))
        assert got == {x: x * 2 for x in xs if x != 13}

        async def collect() -> list[object]:
            it = ex.amap(job, xs, retries=1, return_exceptions=True, chunksize=4)
            return [o async for o in it]

        check(anyio.run(collect))


def _tagged(x: int) -> tuple[int, int]:
    return x, job(x)


def test_task_timeout_is_a_timeout_error_that_keeps_the_worker() -> None:
    with anyexec.Executor("process", workers=1, task_timeout=0.5) as ex:
        pid = ex.submit(os.getpid).result(timeout=60)
        with pytest.raises(TimeoutError, match=r"task_timeout of 0\.5 s"):
            ex.submit(tasks.sleep_then, 30).result(timeout=60)
        assert ex.submit(os.getpid).result(timeout=60) == pid  # same worker, still serving


@pytest.mark.parametrize("backend", ["thread", "asyncio"])
def test_threads_abandon_the_task_and_keep_their_capacity(backend: str) -> None:
    with anyexec.Executor(backend, workers=2) as ex:
        started = time.monotonic()
        out = list(ex.map(tasks.slow_on, range(12), task_timeout=0.3, return_exceptions=True))
        elapsed = time.monotonic() - started
        assert isinstance(out[0], anyexec.TaskTimeout) and "abandoned" in str(out[0])
        assert out[1:] == list(range(1, 12))
        assert elapsed < 20  # the hung task (30 s) did not hold the map
        # capacity recovered: two more tasks still run side by side
        assert list(ex.map(tasks.sleep_for, range(4))) == [0, 1, 2, 3]
        ex.abort()


def test_coroutines_are_cancelled_on_any_backend() -> None:
    import anyio

    async def forever(x: int) -> int:
        await anyio.sleep(300 if x == 2 else 0)
        return x

    with anyexec.Executor("thread", workers=2) as ex:
        out = list(ex.map(forever, range(5), task_timeout=0.3, return_exceptions=True))
    assert isinstance(out[2], anyexec.TaskTimeout) and out[:2] + out[3:] == [0, 1, 3, 4]


def test_task_timeout_where_nothing_can_stop_the_task() -> None:
    with (
        anyexec.Executor("thread", workers=1) as ex,
        pytest.raises(anyexec.ConfigError, match="cannot stop"),
    ):
        ex.submit(tasks.square, 1) and anyexec.Executor("thread", task_timeout=1).submit(
            tasks.square, 1
        )


def test_bad_fault_arguments() -> None:
    with pytest.raises(anyexec.ConfigError, match="task_timeout=0"):
        anyexec.Executor("serial", task_timeout=0)
    with pytest.raises(anyexec.ConfigError, match="retries=-1"):
        anyexec.Executor("serial").map(abs, [1], retries=-1)


def test_without_retries_a_dead_worker_fails_its_chunk() -> None:
    with (
        anyexec.Executor("process", workers=2) as ex,
        pytest.raises(anyexec.WorkerLost, match="'process'"),
    ):
        list(ex.map(job, [1, 2, 13, 4]))


def test_kill_running() -> None:
    with anyexec.Executor("process", workers=1) as ex:
        fut = ex.submit(tasks.sleep_then, 60)
        time.sleep(0.5)
        ex.kill_running()
        with pytest.raises(anyexec.WorkerLost):
            fut.result(timeout=30)
        assert ex.submit(tasks.square, 4).result(timeout=60) == 16
    with anyexec.Executor("thread", workers=1) as ex:
        ex.submit(tasks.square, 1).result()
        with pytest.raises(anyexec.Unsupported, match="cannot stop running tasks"):
            ex.kill_running()


def _descendants(pid: int) -> set[int]:
    try:
        return {p.pid for p in psutil.Process(pid).children(recursive=True)}
    except psutil.NoSuchProcess:
        return set()


def _alive(pids: set[int]) -> set[int]:
    out = set()
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.add(pid)
        except psutil.NoSuchProcess:
            pass
    return out


def _interrupt(args: list[str], ready: str, tmp_path: Path) -> tuple[float, set[int]]:
    """Start a program, wait for its workers, send it SIGINT; seconds to exit, survivors."""
    log = tmp_path / "out.txt"
    with log.open("w") as out:
        # A test runner started in the background inherits SIGINT ignored; a user's
        # terminal does not: give the program the default disposition, as a shell would.
        proc = subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
    deadline = time.monotonic() + 120
    while (
        time.monotonic() < deadline
        and proc.poll() is None
        and not (
            ready in log.read_text() and len(_descendants(proc.pid)) >= 2  # workers are up
        )
    ):
        time.sleep(0.05)
    time.sleep(0.3)
    kids = _descendants(proc.pid)
    assert kids, log.read_text()
    proc.send_signal(signal.SIGINT)
    started = time.monotonic()
    proc.wait(timeout=60)
    elapsed = time.monotonic() - started
    assert "KeyboardInterrupt" in log.read_text() or "interrupted" in log.read_text(), (
        log.read_text()
    )
    time.sleep(0.5)
    return elapsed, _alive(kids)


@pytest.mark.parametrize("backend", PROCESS_BACKENDS)
def test_ctrl_c_during_map(backend: str, tmp_path: Path) -> None:
    script = tmp_path / "prog.py"
    script.write_text(
        textwrap.dedent(f"""
        import anyexec
        from anyexec.testing import tasks
        if __name__ == "__main__":
            with anyexec.Executor({backend!r}, workers=2) as ex:
                ex.start()
                print("ready", flush=True)
                list(ex.map(tasks.sleep_then, [30.0] * 8))
    """)
    )
    elapsed, survivors = _interrupt([sys.executable, str(script)], "ready", tmp_path)
    assert elapsed < 2, f"took {elapsed:.1f} s to return"
    survivors = {p for p in survivors if "tracker" not in " ".join(psutil.Process(p).cmdline())}
    assert not survivors


def test_ctrl_c_during_bench(tmp_path: Path) -> None:
    args = [
        sys.executable,
        "-m",
        "anyexec",
        "bench",
        "--backend",
        "process",
        "--workload",
        "cpu",
        "--size",
        "1000000",
        "--tasks",
        "8",
        "--workers",
        "2",
        "--repeat",
        "3",
    ]
    elapsed, survivors = _interrupt(args, "anyexec bench", tmp_path)
    assert elapsed < 2, f"took {elapsed:.1f} s to return"
    survivors = {p for p in survivors if "tracker" not in " ".join(psutil.Process(p).cmdline())}
    assert not survivors


#: Open/close cycles per backend. The embedded dask cluster costs ~1.3 s a cycle, so it
#: runs 20 here; tests/test_dask.py runs 1,000 cycles of a dask Executor connected to a
#: real scheduler.
CYCLES = {
    "serial": 1000,
    "thread": 1000,
    "asyncio": 1000,
    "process": 1000,
    "loky": 1000,
    "dask": 20,
}


@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.parametrize("backend", list(CYCLES))
def test_open_close_cycles_leak_nothing(backend: str, leak_check: Any) -> None:
    if backend in ("loky", "dask"):
        pytest.importorskip(f"anyexec_{backend}")

    def cycle() -> None:
        with anyexec.Executor(backend, workers=2) as ex:
            ex.submit(tasks.square, 2).result(timeout=120)

    leak_check(cycle, CYCLES[backend])


# -- calls abandoned past task_timeout (thread, asyncio) ---------------------------------


def _abandoned_now(expected: int, timeout: float = 60) -> int:
    """``abandoned_threads()``, once it settles at ``expected`` or below (or after
    ``timeout``): calls that earlier tests abandoned may still be ending."""
    from anyexec.contract import abandoned_threads

    deadline = time.monotonic() + timeout
    while abandoned_threads() > expected and time.monotonic() < deadline:
        time.sleep(0.02)
    return abandoned_threads()


@pytest.mark.parametrize("backend", ["thread", "asyncio"])
def test_closing_never_waits_for_abandoned_calls(backend: str) -> None:
    import threading

    from anyexec.contract import abandoned_threads

    release = threading.Event()

    def hang_on_0(x: int) -> int:
        if x == 0:
            release.wait(120)
        return x

    before = _abandoned_now(0, timeout=30)  # what earlier tests left running, ending
    try:
        with anyexec.Executor(backend, workers=2) as ex:
            out = list(ex.map(hang_on_0, range(4), task_timeout=0.5, return_exceptions=True))
        # The block was left while the abandoned call still waits for `release`.
        assert isinstance(out[0], anyexec.TaskTimeout) and out[1:] == [1, 2, 3]
        assert abandoned_threads() >= 1
    finally:
        release.set()
    assert _abandoned_now(before) <= before


def test_asyncio_capacity_comes_back_after_an_abandoned_call() -> None:
    """The abandoned call's capacity is given back from the event-loop thread (a done
    callback there): the loop's limiter returns to its worker count."""
    from anyexec.builtin.asyncio import PortalExecutor

    pool = PortalExecutor(2)
    try:
        fut = pool.submit(tasks.sleep_then, 0.5)
        pool.grow(1)  # as map does when it abandons `fut`
        assert pool._limiter.total_tokens == 3 and pool._slots.total_tokens == 3
        fut.add_done_callback(lambda _: pool.grow(-1))  # runs on the loop thread
        fut.result(timeout=60)
        deadline = time.monotonic() + 30
        while pool._limiter.total_tokens != 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert pool._limiter.total_tokens == 2 and pool._slots.total_tokens == 2
    finally:
        pool.shutdown()


EXIT_SCRIPT = """
import functools
import anyexec
from anyexec.testing import tasks

if __name__ == "__main__":
    hang = functools.partial(tasks.slow_on, seconds=300)  # item 0 runs 300 s
    out = list(anyexec.map(hang, range(4), task_timeout=1, return_exceptions=True))
    print(type(out[0]).__name__, out[1:], anyexec.contract.abandoned_threads(), flush=True)
"""


@pytest.mark.parametrize("backend", ["thread", "asyncio"])
def test_interpreter_exit_never_waits_for_abandoned_calls(backend: str, tmp_path: Path) -> None:
    """Item 0 runs 300 s: the program must end long before."""
    script = tmp_path / "prog.py"
    script.write_text(EXIT_SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANYEXEC_")}
    env.update(ANYEXEC_BACKEND=backend, ANYEXEC_WORKERS="2")
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["TaskTimeout", "[1,", "2,", "3]", "1"], done.stdout


# -- standard futures on asyncio, and the interpreter's end ------------------------------


def test_asyncio_futures_are_standard() -> None:
    import threading

    release = threading.Event()
    with anyexec.Executor("asyncio", workers=1) as ex:
        running = ex.submit(release.wait, 60)
        queued = ex.submit(tasks.square, 3)
        deadline = time.monotonic() + 60
        while not running.running() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert running.running() and not queued.running()
        assert not running.cancel()  # a running call cannot be cancelled ...
        assert queued.cancel() and queued.cancelled()  # ... one waiting for a worker can
        done, _ = cf.wait([queued], timeout=30)  # and its waiters are told
        assert queued in done
        again = ex.submit(tasks.square, 4)
        ex.shutdown(wait=False, cancel_futures=True)
        assert again.cancelled() and not running.cancelled() and running.running()
        release.set()
        assert running.result(timeout=60) is True  # ... and it went on to the end


SUBMIT_AT_EXIT = """
import atexit, sys
import anyexec

ex = anyexec.Executor(sys.argv[1], workers=1)
ex.submit(abs, -1).result()
late = ex.submit(print, "submitted before exit: ran", flush=True)  # never waited for

def at_exit():
    try:
        ex.submit(print, "ran after shutdown")
    except RuntimeError as exc:
        print("refused:", exc, flush=True)

atexit.register(at_exit)
if sys.argv[2] == "shutdown":
    ex.shutdown(wait=False)
"""


@pytest.mark.parametrize("how", ["exit", "shutdown"])
@pytest.mark.parametrize("backend", ["serial", "thread", "asyncio"])
def test_interpreter_exit_runs_submitted_work_then_refuses_more(
    backend: str, how: str, tmp_path: Path
) -> None:
    script = tmp_path / "prog.py"
    script.write_text(SUBMIT_AT_EXIT)
    done = subprocess.run(
        [sys.executable, str(script), backend, how],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "submitted before exit: ran" in done.stdout, done.stdout + done.stderr
    if how == "exit":
        assert "refused: cannot schedule new futures after interpreter shutdown" in done.stdout
    assert "ran after shutdown" not in done.stdout and "Traceback" not in done.stderr


NESTED = """
import anyexec

def inner(x):
    with anyexec.using("process", workers=2):
        return sum(anyexec.map(abs, range(x)))

if __name__ == "__main__":
    with anyexec.Executor("process", workers=2) as ex:
        print(list(ex.map(inner, [3, 4, 5, 6])), flush=True)
    print("closed", flush=True)
"""


@pytest.mark.slow
def test_a_pool_nested_in_a_process_task_is_closed_with_the_task(tmp_path: Path) -> None:
    script = tmp_path / "prog.py"
    script.write_text(NESTED)
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, timeout=120
        )
        assert done.stdout.split("\n")[:2] == ["[3, 6, 10, 15]", "closed"], done.stderr
        assert "Traceback" not in done.stderr, done.stderr


class _Stubborn(Exception):
    """An exception that cannot be pickled back (it holds a lock)."""

    def __init__(self, x: int) -> None:
        super().__init__(x)
        self.lock = threading.Lock()


def mixed(x: int, crashes: bool = True) -> object:
    """500 tasks of every kind of trouble; ``crashes`` adds the ones that kill a worker
    process (never on backends whose workers are the caller's own threads)."""
    kind = x % 100
    if kind == 7:  # hangs; where the call can only be abandoned (threads), not for long
        time.sleep(300 if crashes else 20)
    if crashes and x in (13, 213, 413):
        os._exit(3)
    if crashes and x in (31, 331):
        import ctypes

        ctypes.string_at(0)  # a segfault
    if kind == 50:
        raise SystemExit(x)
    if kind == 60:
        raise KeyboardInterrupt
    if kind == 70:
        return threading.Lock()
    if kind == 80:
        raise _Stubborn(x)
    if kind == 90:
        raise ValueError("x" * 5_000_000)
    return x * 2


def _expected(x: int, crashes: bool, crossing: bool) -> type | None:
    """The outcome's type for input ``x`` (None: the doubled value)."""
    kind = x % 100
    if kind == 7:
        return anyexec.TaskTimeout
    if crashes and x in (13, 213, 413, 31, 331):
        return anyexec.WorkerLost
    if kind in (50, 60):
        return anyexec.TaskAborted
    if kind == 70:
        return anyexec.UnpicklableError if crossing else type(threading.Lock())
    if kind == 80:
        return anyexec.UnpicklableError if crossing else _Stubborn
    if kind == 90:
        return ValueError
    return None


@pytest.mark.slow
@pytest.mark.parametrize("backend", [*WORKER_BACKENDS, "thread", "asyncio"])
def test_every_input_gets_one_outcome_at_its_index(backend: str) -> None:
    """The fault mix: hangs, crashes, segfaults, SystemExit, KeyboardInterrupt, unpicklable
    results and exceptions, huge messages -- each input's outcome at its index, nothing
    else lost, and closing does not wait for what was abandoned."""
    import functools

    crossing = backend in ("process", "loky", "dask")
    fn = functools.partial(mixed, crashes=crossing)
    with anyexec.Executor(backend, workers=2) as ex:
        out = list(ex.map(fn, range(500), task_timeout=1, retries=1, return_exceptions=True))
    assert len(out) == 500
    wrong = {}
    for x, got in enumerate(out):
        want = _expected(x, crossing, crossing)
        if want is None:
            if got != x * 2:
                wrong[x] = repr(got)[:200]
        elif not isinstance(got, want):
            wrong[x] = f"{type(got).__name__}: {str(got)[:200]} (expected {want.__name__})"
    assert not wrong, wrong
