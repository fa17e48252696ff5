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
