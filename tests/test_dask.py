"""The dask backend (backends/anyexec-dask) on real `dask scheduler` and `dask worker`
processes on 127.0.0.1, started and stopped here, and on its embedded LocalCluster."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("anyexec_dask")
psutil = pytest.importorskip("psutil")

import distributed  # noqa: E402

import anyexec  # noqa: E402
from anyexec.testing import tasks  # noqa: E402
from anyexec_dask import SchedulerLost, SchedulerUnreachable  # noqa: E402


def _dask_cli() -> list[str]:
    script = Path(sys.executable).with_name("dask")
    return [str(script)] if script.exists() else [sys.executable, "-m", "dask"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RealCluster:
    """A `dask scheduler` and `dask worker` processes, as a user would start them."""

    folder: Path
    scheduler: subprocess.Popen[bytes] | None = None
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    address: str = ""

    def start(
        self, n_workers: int, env: dict[str, str] | None = None, nanny: bool = False
    ) -> RealCluster:
        sched_file = self.folder / "scheduler.json"
        port = free_port()
        self.scheduler = subprocess.Popen(
            env={**os.environ, **(env or {})},
            args=[
                *_dask_cli(),
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-dashboard",
                "--scheduler-file",
                str(sched_file),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while not sched_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        self.address = json.loads(sched_file.read_text())["address"]
        for i in range(n_workers):
            self.workers.append(
                subprocess.Popen(
                    [
                        *_dask_cli(),
                        "worker",
                        self.address,
                        "--nthreads",
                        "1",
                        "--nanny" if nanny else "--no-nanny",
                        "--no-dashboard",
                        "--host",
                        "127.0.0.1",
                        "--name",
                        f"w{i}",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        with distributed.Client(self.address, timeout=30, set_as_default=False) as client:
            client.wait_for_workers(n_workers, timeout=60)
        return self

    def stop(self) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)  # a stopped worker cannot handle SIGTERM
        for proc in [*self.workers, self.scheduler]:
            if proc is not None and proc.poll() is None:
                proc.terminate()
        for proc in [*self.workers, self.scheduler]:
            if proc is not None:
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=20)

    def n_workers(self) -> int:
        with distributed.Client(self.address, timeout=30, set_as_default=False) as client:
            return len(client.scheduler_info()["workers"])


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealCluster]:
    real = RealCluster(tmp_path_factory.mktemp("dask"))
    try:
        yield real.start(2)
    finally:
        real.stop()


@pytest.fixture
def fresh_cluster(tmp_path: Path) -> Iterator[RealCluster]:
    real = RealCluster(tmp_path)
    try:
        yield real.start(2)
    finally:
        real.stop()


def test_map_and_submit_on_a_real_scheduler(cluster: RealCluster) -> None:
    with anyexec.Executor("dask", workers=2, address=cluster.address) as ex:
        assert list(ex.map(tasks.square, range(300))) == [x * x for x in range(300)]
        assert sorted(ex.map(tasks.square, range(50), ordered=False)) == [x * x for x in range(50)]
        fut = ex.submit(tasks.add, 1, 2, z=3)
        assert isinstance(fut, __import__("concurrent.futures").futures.Future)
        assert fut.result(timeout=60) == 6
        pids = {pid for pid, _ in ex.map(tasks.where, range(40), chunksize=1)}
        assert os.getpid() not in pids  # ran in the worker processes
    assert cluster.n_workers() == 2  # a cluster merely connected to is left running


def test_address_from_environment(cluster: RealCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANYEXEC_DASK_ADDRESS", cluster.address)
    with anyexec.Executor("dask") as ex:
        assert ex.options["address"] == cluster.address
        assert ex.submit(tasks.square, 9).result(timeout=60) == 81
        assert ex.settings.sources["option address"].startswith("environment variable")


def test_address_from_config_file(cluster: RealCluster) -> None:
    Path("pyproject.toml").write_text(
        f'[tool.anyexec]\nbackend = "dask"\n[tool.anyexec.dask]\naddress = "{cluster.address}"\n'
    )
    with anyexec.Executor() as ex:
        assert (ex.backend, ex.options["address"]) == ("dask", cluster.address)
        assert list(ex.map(tasks.square, range(5))) == [0, 1, 4, 9, 16]


def _map_losing_a_worker(real: RealCluster, n: int, after: int, sig: signal.Signals) -> list[int]:
    """Map ``n`` short tasks; after ``after`` results, send ``sig`` to the first worker."""
    with anyexec.Executor("dask", workers=2, address=real.address) as ex:
        it = ex.map(tasks.sleep_for, range(n), chunksize=2)
        got = [next(it) for _ in range(after)]
        real.workers[0].send_signal(sig)
        got.extend(it)
    return got


def test_worker_killed_mid_map_loses_nothing(fresh_cluster: RealCluster) -> None:
    assert _map_losing_a_worker(fresh_cluster, 200, 20, signal.SIGKILL) == list(range(200))


def test_worker_made_unreachable_mid_map_loses_nothing(tmp_path: Path) -> None:
    """A worker that stops answering (SIGSTOP: its connections stay open, it just goes
    silent) is removed by the scheduler after worker-ttl; its tasks run elsewhere."""
    real = RealCluster(tmp_path)
    try:
        real.start(2, env={"DASK_DISTRIBUTED__SCHEDULER__WORKER_TTL": "3s"})
        assert _map_losing_a_worker(real, 100, 10, signal.SIGSTOP) == list(range(100))
    finally:
        real.stop()


def _abandoned_per_worker(ex: anyexec.Executor) -> dict[str, int]:
    from anyexec.contract import abandoned_threads

    client = ex._pool.inner.client  # type: ignore[union-attr]
    return dict(client.run(abandoned_threads))


def _wait_for_restart(ex: anyexec.Executor, before: set[str]) -> dict[str, int]:
    """Until two workers run, none holds an abandoned thread, and one is new."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        now = _abandoned_per_worker(ex)
        if len(now) == 2 and not any(now.values()) and set(now) != before:
            return now
        time.sleep(0.2)
    raise AssertionError(f"no restart: {before} -> {_abandoned_per_worker(ex)}")


def test_task_timeout_abandons_a_plain_function_and_restarts_its_worker() -> None:
    """A worker thread cannot be interrupted: the call is abandoned in the worker (its
    result discarded), everything else goes on, and the worker restarts once idle."""
    with anyexec.Executor("dask", workers=2, task_timeout=0.5) as ex:
        ex.start()
        before = set(_abandoned_per_worker(ex))
        with pytest.raises(anyexec.TaskTimeout, match=r"task_timeout of 0\.5 s"):
            ex.submit(tasks.sleep_then, 60).result(timeout=60)
        assert ex.submit(tasks.square, 3).result(timeout=60) == 9
        _wait_for_restart(ex, before)
        out = list(ex.map(tasks.slow_on, range(10), return_exceptions=True))
        assert isinstance(out[0], anyexec.TaskTimeout) and out[1:] == list(range(1, 10))


def test_task_timeout_on_a_real_cluster_with_nannies(tmp_path: Path) -> None:
    real = RealCluster(tmp_path)
    try:
        real.start(2, nanny=True)
        with anyexec.Executor("dask", workers=2, address=real.address) as ex:
            ex.start()
            before = set(_abandoned_per_worker(ex))
            out = list(
                ex.map(tasks.sleep_then, [0, 60, 0, 0], task_timeout=0.5, return_exceptions=True)
            )
            assert out[0] == 0 and out[2:] == [0, 0]
            assert isinstance(out[1], anyexec.TaskTimeout)
            _wait_for_restart(ex, before)
    finally:
        real.stop()


def test_task_timeout_without_a_nanny_leaves_the_thread(cluster: RealCluster) -> None:
    """No nanny would start a closed worker again: the abandoned thread runs on there."""
    with anyexec.Executor("dask", workers=2, address=cluster.address, task_timeout=0.5) as ex:
        with pytest.raises(anyexec.TaskTimeout):
            ex.submit(tasks.sleep_then, 20).result(timeout=60)
        assert ex.submit(tasks.square, 4).result(timeout=60) == 16
        assert sum(_abandoned_per_worker(ex).values()) == 1
        assert cluster.n_workers() == 2


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_open_close_cycles_on_a_real_scheduler_leak_nothing(
    cluster: RealCluster, leak_check: Any
) -> None:
    def cycle() -> None:
        with anyexec.Executor("dask", workers=2, address=cluster.address) as ex:
            ex.submit(tasks.square, 2).result(timeout=120)

    leak_check(cycle, 1000)


def test_unreachable_scheduler_names_the_address() -> None:
    port = free_port()
    ex = anyexec.Executor("dask", address=f"tcp://127.0.0.1:{port}", connect_timeout=1)
    started = time.monotonic()
    with pytest.raises(SchedulerUnreachable, match=rf"tcp://127.0.0.1:{port} within 1 s"):
        ex.submit(tasks.square, 1)
    assert time.monotonic() - started < 30
    ex.shutdown()


@pytest.mark.parametrize("address", ["tcp://", "http://x:1", "tcp://host:port", "a b:1"])
def test_malformed_address(address: str) -> None:
    with pytest.raises(anyexec.ConfigError, match="not a dask scheduler address"):
        anyexec.Executor("dask", address=address).submit(tasks.square, 1)


def test_unknown_dask_option() -> None:
    with pytest.raises(
        anyexec.ConfigError, match=r"backend 'dask' does not take option 'n_workers'"
    ):
        anyexec.Executor("dask", n_workers=3)


def test_scheduler_gone_mid_map_fails_without_hanging(fresh_cluster: RealCluster) -> None:
    ex = anyexec.Executor("dask", workers=2, address=fresh_cluster.address)
    it = ex.map(tasks.sleep_for, range(400), chunksize=1)
    next(it)
    assert fresh_cluster.scheduler is not None
    fresh_cluster.scheduler.send_signal(signal.SIGKILL)
    started = time.monotonic()
    with pytest.raises(
        (
            SchedulerLost,
            OSError,
            distributed.client.FutureCancelledError,
            __import__("concurrent.futures").futures.CancelledError,
        )
    ):
        list(it)
    assert time.monotonic() - started < 120
    ex.shutdown(wait=False, cancel_futures=True)


def test_embedded_cluster_leaves_no_process() -> None:
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    with anyexec.Executor("dask", workers=2) as ex:
        assert list(ex.map(tasks.square, range(20))) == [x * x for x in range(20)]
        during = {p.pid for p in me.children(recursive=True)} - before
        assert len(during) >= 2  # real worker processes
        listening = {c.laddr.ip for c in me.net_connections() if c.status == "LISTEN"}
        assert listening <= {"127.0.0.1"}, listening

    def leftovers() -> list[list[str]]:
        out = []
        for p in me.children(recursive=True):
            try:
                cmd = p.cmdline()
            except psutil.Error:
                continue
            if p.pid in during and "resource_tracker" not in " ".join(cmd):
                out.append(cmd)
        return out

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and leftovers():
        time.sleep(0.2)
    assert not leftovers()


# -- the embedded cluster: hosted in a subprocess, credentials, signals ---------------------


def _inner(ex: anyexec.Executor) -> Any:
    """The backend's DaskExecutor behind an anyexec Executor."""
    return ex._pool.inner  # type: ignore[union-attr]


_INTRUDER = """
import sys, distributed
address = sys.argv[1]
attempts = {
    "no credentials": dict(),
    "other credentials": dict(security=distributed.Security.temporary()),
    "plain tcp": dict(address=address.replace("tls://", "tcp://")),
}
for name, kwargs in attempts.items():
    try:
        with distributed.Client(kwargs.pop("address", address), timeout=3,
                                set_as_default=False, **kwargs) as c:
            c.submit(sum, [1, 2]).result(timeout=10)
        print(name, "ADMITTED", flush=True)
    except Exception as exc:
        print(name, "refused:", type(exc).__name__, flush=True)
"""


@pytest.mark.skipif(not Path("/dev/shm").is_dir(), reason="named semaphores live in /dev/shm")
def test_embedded_cluster_leaves_no_semaphore_in_dev_shm() -> None:
    """The nannies' queues to their workers use named semaphores; the host unlinks them
    before it kills its group (its resource tracker dies with it)."""

    def semaphores() -> set[str]:
        return {p.name for p in Path("/dev/shm").glob("sem.*")}

    before = semaphores()
    with anyexec.Executor("dask", workers=2) as ex:
        assert ex.submit(tasks.square, 3).result(timeout=120) == 9
        made = semaphores() - before
        assert made, "the embedded cluster's nannies made no named semaphore"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and made & semaphores():
        time.sleep(0.2)
    assert not made & semaphores(), sorted(made & semaphores())


def test_embedded_cluster_refuses_a_process_without_its_credentials() -> None:
    """The embedded cluster's scheduler speaks TLS with per-cluster temporary certificates
    that only the caller holds: another local process cannot submit work to it."""
    with anyexec.Executor("dask", workers=1) as ex:
        assert ex.submit(tasks.square, 3).result(timeout=60) == 9
        address = _inner(ex).address
        assert address.startswith("tls://127.0.0.1:")
        out = subprocess.run(
            [sys.executable, "-c", _INTRUDER, address],
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout
        print(out)
        assert out.count("refused:") == 3, out
        assert "ADMITTED" not in out


def test_embedded_cluster_lives_in_a_reaped_subprocess() -> None:
    """The scheduler runs in the host subprocess, not in the caller (whose memory it grew
    by every task spec); shutdown() ends the host's whole process group."""
    with anyexec.Executor("dask", workers=2) as ex:
        assert list(ex.map(tasks.square, range(10))) == [x * x for x in range(10)]
        host = _inner(ex).host
        assert host is not None and host.pid != os.getpid()
        import distributed.scheduler

        assert not distributed.scheduler.Scheduler._instances  # none in this process
        group = host.pid
        assert ex.submit(tasks.where, 0).result(timeout=60)[0] != os.getpid()
    deadline = time.monotonic() + 30
    while _group_alive(group) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _group_alive(group)


_BARE_MAP = """
import os, sys, time, anyexec
from pathlib import Path

def work(i, folder=sys.argv[1]):
    Path(folder, str(i)).touch()
    time.sleep(0.25)
    return i

if __name__ == "__main__":
    it = anyexec.map(work, range(400), chunksize=1)
    next(it)
    print(anyexec.current()._pool.inner.host.pid, flush=True)
    for _ in it:
        pass
"""


def _group_alive(pgid: int) -> list[int]:
    """The live processes of process group ``pgid``. Zombies do not count: they hold
    nothing, and init reaps them (a container whose pid 1 does not reap leaves them)."""
    alive = []
    for p in psutil.process_iter(["status"]):
        try:
            if os.getpgid(p.pid) == pgid and p.info["status"] != psutil.STATUS_ZOMBIE:
                alive.append(p.pid)
        except (ProcessLookupError, psutil.Error):
            continue
    return alive


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_signal_to_the_caller_leaves_no_dask_process(sig: signal.Signals, tmp_path: Path) -> None:
    """SIGINT during a bare anyexec.map: the caller exits, queued tasks are cancelled.
    SIGTERM and SIGKILL: the host sees its stdin close and kills its group. Every time,
    no scheduler, nanny or worker process is left (times printed, bounds generous)."""
    script = tmp_path / "bare_map.py"
    script.write_text(_BARE_MAP)
    folder = tmp_path / "ran"
    folder.mkdir()
    env = {**os.environ, "ANYEXEC_BACKEND": "dask", "ANYEXEC_WORKERS": "2"}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(folder)],
        stdout=subprocess.PIPE,
        env=env,
        # pytest run from a background job would hand SIGINT down ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # the first result arrived
        assert line.strip().isdigit(), line
        host = int(line)
        proc.send_signal(sig)
        sent = time.monotonic()
        proc.wait(timeout=60)
        exited = time.monotonic() - sent
        while _group_alive(host) and time.monotonic() - sent < 30:
            time.sleep(0.05)
        gone = time.monotonic() - sent
        print(f"{sig.name}: caller exited after {exited:.2f} s, cluster gone after {gone:.2f} s")
        assert not _group_alive(host), f"dask processes left behind {gone:.1f} s after {sig.name}"
        assert not list(Path("/dev/shm").glob(f"anyexec-{proc.pid}-*"))
        ran = len(list(folder.iterdir()))
        assert ran < 400, "every queued task ran: none was cancelled"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


_EXIT_WITHOUT_SHUTDOWN = """
import sys, time, anyexec
from pathlib import Path

def work(i, folder=sys.argv[1]):
    time.sleep(0.3)
    Path(folder, str(i)).touch()
    return i

if __name__ == "__main__":
    ex = anyexec.Executor("dask", workers=2)
    futures = [ex.submit(work, i) for i in range(6)]
    if sys.argv[2] == "wait=False":
        ex.shutdown(wait=False)
        print(futures[0].result(timeout=120), flush=True)
"""


@pytest.mark.slow
@pytest.mark.parametrize("how", ["no shutdown", "wait=False"])
def test_submitted_work_is_not_lost_at_exit(how: str, tmp_path: Path) -> None:
    """As with the standard library: work submitted and not waited for still runs when
    the script ends without shutdown() (and after shutdown(wait=False) the futures still
    deliver, not CancelledError)."""
    script = tmp_path / "exit.py"
    script.write_text(_EXIT_WITHOUT_SHUTDOWN)
    folder = tmp_path / "ran"
    folder.mkdir()
    out = subprocess.run(
        [sys.executable, str(script), str(folder), how],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert sorted(int(p.name) for p in folder.iterdir()) == list(range(6))
    if how == "wait=False":
        assert out.stdout.strip() == "0"


# -- futures as the standard library's ------------------------------------------------------


def test_running_call_is_running_and_cannot_be_cancelled() -> None:
    with anyexec.Executor("dask", workers=2) as ex:
        fut = ex.submit(tasks.sleep_then, 1.5, "done")
        deadline = time.monotonic() + 60
        while not fut.running() and not fut.done() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert fut.running()
        assert fut.cancel() is False
        assert fut.result(timeout=60) == "done"
        assert not fut.cancelled() and not fut.running()


def test_shutdown_cancel_futures_spares_running_calls() -> None:
    ex = anyexec.Executor("dask", workers=2)
    long = [ex.submit(tasks.sleep_then, 2, i) for i in range(2)]
    deadline = time.monotonic() + 60
    while not all(f.running() for f in long) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(f.running() for f in long)
    queued = [ex.submit(tasks.sleep_then, 0.5, i) for i in range(10)]
    ex.shutdown(wait=True, cancel_futures=True)
    assert [f.result(timeout=0) for f in long] == [0, 1]  # ran to the end, not cancelled
    cancelled = [f for f in queued if f.cancelled()]
    assert len(cancelled) >= 6  # a worker may already hold one or two (documented)
    assert all(f.done() for f in queued)


def test_shutdown_without_wait_still_delivers() -> None:
    ex = anyexec.Executor("dask", workers=2)
    fut = ex.submit(tasks.sleep_then, 0.5, "late")
    ex.shutdown(wait=False)
    assert fut.result(timeout=60) == "late"


# -- fetching results -----------------------------------------------------------------------


def _fetcher(pending: int) -> Any:
    """What ``DaskExecutor._next_batch`` reads of its executor: the queue of finished
    futures and the pending ones (only their number matters)."""
    import queue
    import threading
    from types import SimpleNamespace

    return SimpleNamespace(
        _ready=queue.SimpleQueue(), _lock=threading.Lock(), _pending=dict.fromkeys(range(pending))
    )


def test_results_are_fetched_in_batches_of_a_quarter_of_the_pending(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One gather per batch: the results thread waits for more finished futures (up to a
    quarter of those pending) instead of one round trip per result; it returns as soon as
    the batch is complete, not after LINGER (here longer than the test's timeout)."""
    import threading

    import anyexec_dask

    monkeypatch.setattr(anyexec_dask, "LINGER", 3600.0)
    ex = _fetcher(pending=12)
    ex._ready.put("a")
    later = threading.Timer(0.05, lambda: [ex._ready.put(k) for k in ("b", "c")])
    later.start()
    try:
        assert anyexec_dask.DaskExecutor._next_batch(ex) == ["a", "b", "c"]
    finally:
        later.cancel()
    ex._ready.put("d")  # all there is pending: no waiting for more
    ex._ready.put("e")
    ex._pending = {"d": None, "e": None}
    assert anyexec_dask.DaskExecutor._next_batch(ex) == ["d", "e"]


def test_kill_running_while_a_result_is_fetched_is_worker_lost() -> None:
    """A finished result the results thread is fetching when kill_running() restarts the
    workers is lost with them: WorkerLost (the task was stopped), not SchedulerLost."""
    import threading

    with anyexec.Executor("dask", workers=1) as ex:
        assert ex.submit(tasks.square, 2).result(timeout=120) == 4
        inner = ex._pool.inner
        client = inner.client
        gather, killed = client.gather, threading.Event()

        def gather_after_a_kill(*args: Any, **kwargs: Any) -> Any:
            if not killed.is_set():
                killed.set()
                ex.kill_running()
            return gather(*args, **kwargs)

        client.gather = gather_after_a_kill
        try:
            fut = ex.submit(tasks.square, 3)
            try:
                got: Any = fut.result(timeout=120)
            except Exception as exc:
                got = exc
        finally:
            del client.gather
        assert killed.is_set()
        assert got == 9 or isinstance(got, anyexec.WorkerLost), repr(got)
        assert ex.submit(tasks.square, 5).result(timeout=120) == 25


def test_shutdown_waits_for_a_result_being_fetched() -> None:
    """shutdown(wait=True) while the results thread fetches a result: the result arrives
    before the client closes, never SchedulerLost."""
    import threading

    ex = anyexec.Executor("dask", workers=1)
    assert ex.submit(tasks.square, 2).result(timeout=120) == 4
    client = ex._pool.inner.client
    gather, inside = client.gather, threading.Event()

    def slow_gather(*args: Any, **kwargs: Any) -> Any:
        inside.set()
        time.sleep(1.0)
        return gather(*args, **kwargs)

    client.gather = slow_gather
    fut = ex.submit(tasks.square, 3)
    assert inside.wait(120)
    ex.shutdown(wait=True)
    assert fut.result(timeout=0) == 9


def test_a_lone_result_waits_at_most_linger(monkeypatch: pytest.MonkeyPatch) -> None:
    import anyexec_dask

    monkeypatch.setattr(anyexec_dask, "LINGER", 0.0)
    ex = _fetcher(pending=12)
    ex._ready.put("a")
    assert anyexec_dask.DaskExecutor._next_batch(ex) == ["a"]
    for k in ("b", None, "c"):  # the stop sentinel ends the batch: nothing after it is taken
        ex._ready.put(k)
    ex._pending = dict.fromkeys(range(2))
    assert anyexec_dask.DaskExecutor._next_batch(ex) == ["b", None]
    assert anyexec_dask.DaskExecutor._next_batch(ex) == ["c"]


@pytest.mark.parametrize("watch", ["event loop", "done callbacks"])
def test_results_of_many_short_calls_arrive_in_order_and_complete(
    watch: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both ways of learning that a future finished: from the client's event loop, and
    through ``add_done_callback`` where distributed lacks the coroutine for the first."""
    import anyexec_dask

    if watch == "done callbacks":
        monkeypatch.setattr(anyexec_dask, "_DONE_CALLBACK", None)
    else:
        assert anyexec_dask._DONE_CALLBACK is not None
    with anyexec.Executor("dask", workers=2) as ex:
        assert list(ex.map(tasks.square, range(300), chunksize=1, timeout=120)) == [
            i * i for i in range(300)
        ]
        futures = [ex.submit(tasks.square, i) for i in range(40)]
        assert [f.result(timeout=60) for f in futures] == [i * i for i in range(40)]


# -- faults -------------------------------------------------------------------------------


def test_unpicklable_argument_is_unpicklable_error_naming_it() -> None:
    import threading

    with anyexec.Executor("dask", workers=1) as ex:
        with pytest.raises(anyexec.UnpicklableError, match=r"argument 0.*_thread\.lock") as info:
            ex.submit(tasks.square, threading.Lock())
        assert "Could not serialize" not in str(info.value).split("PicklingError")[0]
        assert ex.submit(tasks.square, 5).result(timeout=60) == 25


def test_worker_dying_while_returning_its_result_is_worker_lost() -> None:
    """The result is pickled inside the task, so a worker that dies doing it fails the
    task (counted by allowed-failures), not an endless recompute."""
    import dask_helpers

    with anyexec.Executor("dask", workers=2) as ex:
        with pytest.raises(anyexec.WorkerLost, match="allowed-failures"):
            ex.submit(dask_helpers.returns_worker_killer, 1).result(timeout=240)
        assert ex.submit(tasks.square, 6).result(timeout=120) == 36


@pytest.mark.parametrize("raiser", ["exits", "interrupts"])
def test_task_base_exception_is_its_outcome_not_dead_workers(raiser: str) -> None:
    """SystemExit / KeyboardInterrupt in a task comes back as that task's outcome; the
    worker processes all live on."""
    import dask_helpers

    fn = getattr(dask_helpers, raiser)
    with anyexec.Executor("dask", workers=2) as ex:
        ex.start()
        before = set(_inner(ex).client.scheduler_info()["workers"])
        with pytest.raises(BaseException) as info:
            ex.submit(fn, 3).result(timeout=60)
        seen = [info.value, info.value.__cause__]
        wanted = SystemExit if raiser == "exits" else KeyboardInterrupt
        assert any(isinstance(e, wanted) for e in seen), seen
        assert ex.submit(tasks.square, 7).result(timeout=60) == 49
        assert set(_inner(ex).client.scheduler_info()["workers"]) == before


@pytest.mark.parametrize(
    ("option", "value", "match"),
    [
        ("threads_per_worker", 0, "threads_per_worker' must be at least 1"),
        ("memory_limit", "lots", "Could not interpret 'lots'"),
        ("client", "tcp://x:1", "is not a distributed.Client"),
        ("security", "yes", "is not a distributed.Security"),
    ],
)
def test_bad_options_are_config_errors_up_front(option: str, value: Any, match: str) -> None:
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    with pytest.raises(anyexec.ConfigError, match=match):
        anyexec.Executor("dask", **{option: value}).submit(tasks.square, 1)
    assert {p.pid for p in me.children(recursive=True)} <= before  # nothing started


# -- the user's own cluster -----------------------------------------------------------------


def test_client_option_runs_on_the_users_client(cluster: RealCluster) -> None:
    me = psutil.Process()
    with distributed.Client(cluster.address, set_as_default=False, timeout=30) as client:
        before = {p.pid for p in me.children(recursive=True)}
        with anyexec.Executor("dask", client=client) as ex:
            assert list(ex.map(tasks.square, range(20))) == [x * x for x in range(20)]
            assert _inner(ex).address == cluster.address
            assert {p.pid for p in me.children(recursive=True)} <= before  # no 2nd cluster
        assert client.submit(sum, [1, 2]).result(timeout=60) == 3  # still the user's


@pytest.mark.parametrize("route", ["address", "client"])
def test_a_cluster_not_started_here_gets_arrays_scattered_not_shared(
    cluster: RealCluster, route: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its workers may be on other hosts, where a shared-memory file means nothing: large
    arrays are scattered to them, and no file is written (the embedded cluster shares;
    tests/test_shared_arrays.py)."""
    np = pytest.importorskip("numpy")
    from anyexec import _shared

    written: list[object] = []
    monkeypatch.setattr(_shared, "_write", lambda arr, path: written.append(path))
    arrays = [np.full(300_000, float(i)) for i in range(4)]  # 2.4 MB each
    with distributed.Client(cluster.address, set_as_default=False, timeout=30) as client:
        where = {"client": client} if route == "client" else {"address": cluster.address}
        with anyexec.Executor("dask", workers=2, **where) as ex:
            assert list(ex.map(type, arrays)) == [np.ndarray] * 4  # not a np.memmap
            assert list(ex.map(tasks.array_sum, arrays)) == [300_000.0 * i for i in range(4)]
            assert not ex.settings.backend.shares_memory(_inner(ex))
    assert written == []


def test_default_client_is_used_never_a_second_cluster(
    cluster: RealCluster, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from anyexec import cli

    me = psutil.Process()
    with distributed.Client(cluster.address, timeout=30) as client:  # the default client
        before = {p.pid for p in me.children(recursive=True)}
        with anyexec.Executor("dask") as ex:
            assert ex.submit(tasks.square, 4).result(timeout=60) == 16
            assert _inner(ex).address == cluster.address
            assert "default distributed.Client" in _inner(ex).source
        assert {p.pid for p in me.children(recursive=True)} <= before
        assert client.submit(sum, [2, 3]).result(timeout=60) == 5
        monkeypatch.setenv("ANYEXEC_BACKEND", "dask")
        assert cli.main(["config"]) == 0
        assert "cluster: the process's default distributed.Client" in capsys.readouterr().out


def test_anyexec_config_names_the_embedded_cluster(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from anyexec import cli

    monkeypatch.setenv("ANYEXEC_BACKEND", "dask")
    assert cli.main(["config"]) == 0
    assert "cluster: an embedded cluster in a subprocess" in capsys.readouterr().out
