"""The dask backend across hosts: network namespaces stand in for machines.

Each "host" is a Linux network namespace of its own (``ip netns``): the scheduler in one,
three workers in three others, the caller (a script running ``anyexec.Executor("dask",
address=..., security=...)``) in a fifth. Each has one veth link into a sixth namespace
holding a bridge, the switch. Cutting a host off is ``ip link set ... down`` on its switch
port; a slow link is ``tc netem`` on the switch ports. Every connection speaks TLS with
credentials from ``distributed.Security.temporary()``, written to files that the caller
and every ``dask`` process are given.

Addresses are private (10.213.N.0/24) and live only on links inside these namespaces:
no packet leaves the machine. Every namespace, link and process is removed by the
fixtures' finalizers, also when a test fails.

Needs root (or CAP_NET_ADMIN) and the ``ip`` command; skipped with the reason otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("anyexec_dask")
pytest.importorskip("cryptography")
import distributed

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

TESTS = Path(__file__).parent
PORT = 8786
TASKS = 2000


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


def _can_make_namespaces() -> str | None:
    """Why this machine cannot run the test, or None."""
    if sys.platform != "linux":
        return "network namespaces are Linux only"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    probe = f"axprobe{os.getpid()}"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"cannot create a network namespace here: {made.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


@dataclass
class Net:
    """The namespaces ("hosts"), their addresses, and the switch between them."""

    tag: str
    subnet: str
    hosts: dict[str, str] = field(default_factory=dict)  # role -> address
    created: list[str] = field(default_factory=list)  # namespaces, for the finalizer

    @property
    def switch(self) -> str:
        return f"{self.tag}-sw"

    def ns(self, role: str) -> str:
        return f"{self.tag}-{role}"

    def port(self, role: str) -> str:
        return f"s-{role}"  # the switch's end of role's link

    def build(self, roles: list[str]) -> None:
        _ip("netns", "add", self.switch)
        self.created.append(self.switch)
        sw = ["-n", self.switch]
        _ip(*sw, "link", "add", "br0", "type", "bridge")
        _ip(*sw, "link", "set", "br0", "up")
        _ip(*sw, "link", "set", "lo", "up")
        for n, role in enumerate(roles, start=1):
            ns = self.ns(role)
            _ip("netns", "add", ns)
            self.created.append(ns)
            address = f"{self.subnet}.{n}"
            _ip(*sw, "link", "add", self.port(role), "type", "veth", "peer", "name", "eth0",
                "netns", ns)  # fmt: skip
            _ip(*sw, "link", "set", self.port(role), "master", "br0")
            _ip(*sw, "link", "set", self.port(role), "up")
            _ip("-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            self.hosts[role] = address
            print(f"namespace {ns}: {address} (switch port {self.port(role)})")

    def cut(self, role: str) -> None:
        _ip("-n", self.switch, "link", "set", self.port(role), "down")

    def mend(self, role: str) -> None:
        _ip("-n", self.switch, "link", "set", self.port(role), "up")

    def delay(self, role: str, ms: int) -> bool:
        done = subprocess.run(
            ["tc", "-n", self.switch, "qdisc", "replace", "dev", self.port(role), "root",
             "netem", "delay", f"{ms}ms"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        return done.returncode == 0

    def undelay(self, role: str) -> None:
        subprocess.run(
            ["tc", "-n", self.switch, "qdisc", "del", "dev", self.port(role), "root"],
            capture_output=True, timeout=30,
        )  # fmt: skip

    def remove(self) -> None:
        for ns in reversed(self.created):
            for pid in _ip("netns", "pids", ns, check=False).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            _ip("netns", "del", ns, check=False)
        self.created.clear()


ROLES = ["sched", "w1", "w2", "w3", "caller"]


@pytest.fixture(scope="module")
def net() -> Iterator[Net]:
    reason = _can_make_namespaces()
    if reason:
        pytest.skip(reason)
    tag = f"ax{os.getpid() % 100000}"
    made = Net(tag=tag, subnet=f"10.213.{os.getpid() % 250}")
    try:
        made.build(ROLES)
        yield made
    finally:
        made.remove()
        left = [ns for ns in _ip("netns", "list").stdout.split() if ns.startswith(tag)]
        assert not left, f"namespaces left behind: {left}"


@pytest.fixture(scope="module")
def credentials(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One temporary CA-signed certificate for every host, as PEM files (0600)."""
    sec = distributed.Security.temporary()
    folder = tmp_path_factory.mktemp("tls")
    files = {}
    for name, pem in [("ca", sec.tls_ca_file), ("cert", sec.tls_client_cert),
                      ("key", sec.tls_client_key)]:  # fmt: skip
        path = folder / f"{name}.pem"
        path.write_text(pem)
        path.chmod(0o600)
        files[name] = str(path)
    return files


def _dask_cli() -> list[str]:
    script = Path(sys.executable).with_name("dask")
    return [str(script)] if script.exists() else [sys.executable, "-m", "dask"]


# Short enough to notice a dead link within seconds, long enough for a loaded 2-core box.
DASK_ENV = {
    "DASK_DISTRIBUTED__SCHEDULER__WORKER_TTL": "6s",
    "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "5s",
    "DASK_DISTRIBUTED__COMM__TIMEOUTS__TCP": "12s",  # dask: at least 11 s
    "DASK_DISTRIBUTED__CLIENT__HEARTBEAT": "1s",
    "DASK_DISTRIBUTED__ADMIN__TICK__LIMIT": "30s",
    "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
}


@dataclass
class Cluster:
    """A scheduler and three workers, each in its own namespace."""

    net: Net
    tls: dict[str, str]
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"tls://{self.net.hosts['sched']}:{PORT}"

    def tls_args(self) -> list[str]:
        t = self.tls
        return ["--tls-ca-file", t["ca"], "--tls-cert", t["cert"], "--tls-key", t["key"]]

    def spawn(self, role: str, args: list[str], **kw: Any) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.net.ns(role), *args],
            env={**os.environ, **DASK_ENV},
            start_new_session=True,
            **kw,
        )
        self.procs.append(proc)
        return proc

    def start(self) -> Cluster:
        host = self.net.hosts["sched"]
        self.spawn(
            "sched",
            [*_dask_cli(), "scheduler", "--host", host, "--port", str(PORT), "--protocol",
             "tls", "--no-dashboard", *self.tls_args()],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        for role in ("w1", "w2", "w3"):
            self.spawn(
                role,
                [*_dask_cli(), "worker", self.address, "--nthreads", "1", "--no-nanny",
                 "--no-dashboard", "--host", self.net.hosts[role], "--name", role,
                 *self.tls_args()],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        return self

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        self.procs.clear()


@pytest.fixture
def cluster(net: Net, credentials: dict[str, str]) -> Iterator[Cluster]:
    made = Cluster(net, credentials)
    try:
        yield made.start()
    finally:
        made.stop()
        for role in ROLES:
            net.mend(role)
            net.undelay(role)


CALLER = r"""
import json, os, sys, threading, time
import distributed
import anyexec
import dask_helpers
from anyexec.errors import SchedulerLost, SchedulerUnreachable

mode, address, ca, cert, key, folder, out = sys.argv[1:8]
security = distributed.Security(
    tls_ca_file=ca, tls_client_cert=cert, tls_client_key=key, require_encryption=True
)

def say(*words):
    print(*words, flush=True)

ex = anyexec.Executor("dask", workers=3, address=address, security=security,
                      connect_timeout=10)
client = ex.start()._pool.inner.client
client.wait_for_workers(3, timeout=120)
say("ready")
if mode == "map":
    seconds = float(sys.argv[8])
    started = time.perf_counter()
    got = []
    for n, r in enumerate(ex.map(dask_helpers.touch_then_sleep, range(%d),
                                 [folder] * %d, [seconds] * %d, chunksize=4), 1):
        got.append(r)
        if n %% 100 == 0:
            say("progress", n)
    tp = time.perf_counter() - started
    ex.shutdown()
    json.dump({"results": got, "tp": tp}, open(out, "w"))
    say("done")
else:  # "lose": the scheduler's host goes away under a pending map
    it = ex.map(dask_helpers.touch_then_sleep, range(400), [folder] * 400, [0.5] * 400,
                chunksize=1)
    next(it)
    say("progress", 1)
    sys.stdin.readline()  # the test cut the scheduler's link
    cut = time.perf_counter()
    try:
        list(it)
        outcome = "completed"
    except BaseException as exc:
        outcome = type(exc).__name__ + ": " + str(exc)[:300]
    lost_after = time.perf_counter() - cut
    ex.shutdown(wait=False, cancel_futures=True)
    started = time.perf_counter()
    try:
        anyexec.Executor("dask", address=address, security=security,
                         connect_timeout=3).submit(abs, 1)
        again = "connected"
    except BaseException as exc:
        again = type(exc).__name__
    unreachable_after = time.perf_counter() - started
    alive = [t.name for t in threading.enumerate()
             if not t.daemon and t is not threading.main_thread()]
    json.dump({"outcome": outcome, "lost_after": lost_after, "again": again,
               "unreachable_after": unreachable_after, "threads": alive}, open(out, "w"))
    say("done")
""" % (TASKS, TASKS, TASKS)  # noqa: UP031


def _caller(cluster: Cluster, mode: str, folder: Path, out: Path, *extra: str) -> Any:
    t = cluster.tls
    args = [sys.executable, "-c", CALLER, mode, cluster.address, t["ca"], t["cert"], t["key"]]
    return cluster.spawn(
        "caller",
        [*args, str(folder), str(out), *extra],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )


def _lines(proc: subprocess.Popen[bytes], until: str, timeout: float) -> Iterator[str]:
    """The caller's stdout lines, up to one starting with ``until``."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline().decode()
        if not line:
            raise AssertionError(f"the caller exited ({proc.wait(timeout=30)}) before {until!r}")
        yield line.strip()
        if line.startswith(until):
            return
    raise AssertionError(f"no {until!r} from the caller within {timeout} s")


def _runs(folder: Path) -> Counter[int]:
    return Counter(int(p.name.split("-")[0]) for p in folder.iterdir())


def test_worker_host_cut_off_mid_map(cluster: Cluster, tmp_path: Path) -> None:
    """Mid-map, one worker host's link goes down. Every result arrives exactly once, in
    order, and no task ran more than twice (once on the lost host, once again)."""
    folder, out = tmp_path / "ran", tmp_path / "out.json"
    folder.mkdir()
    proc = _caller(cluster, "map", folder, out, "0.005")
    list(_lines(proc, "ready", 180))
    cut = False
    for line in _lines(proc, "done", 300):
        if not cut and line.startswith("progress") and int(line.split()[1]) >= 500:
            cluster.net.cut("w1")
            cut = True
            print(f"cut w1 ({cluster.net.hosts['w1']}) after {line.split()[1]} results")
    assert cut
    assert proc.wait(timeout=60) == 0
    report = json.loads(out.read_text())
    assert report["results"] == list(range(TASKS))
    runs = _runs(folder)
    assert set(runs) == set(range(TASKS))
    assert max(runs.values()) <= 2, runs.most_common(3)
    print(f"Tp {report['tp']:.2f} s; {sum(v > 1 for v in runs.values())} tasks ran twice")


def test_slow_link(cluster: Cluster, tmp_path: Path) -> None:
    """20 ms more latency on every switch port (netem); the same map completes."""
    if not all(cluster.net.delay(role, 20) for role in ROLES):
        pytest.skip("tc netem is not available in this kernel")
    folder, out = tmp_path / "ran", tmp_path / "out.json"
    folder.mkdir()
    proc = _caller(cluster, "map", folder, out, "0.005")
    list(_lines(proc, "done", 400))
    assert proc.wait(timeout=60) == 0
    report = json.loads(out.read_text())
    assert report["results"] == list(range(TASKS))
    assert set(_runs(folder).values()) == {1}
    print(f"slow link (20 ms per hop): Tp {report['tp']:.2f} s for {TASKS} tasks")


#: connect_timeout (10 s) plus this: the client notices a silent link after its
#: heartbeat (1 s) and TCP timeout (12 s), then tries to reconnect for connect_timeout
#: before the futures fail. Generous on a loaded 2-core machine.
CONNECT_TIMEOUT = 10
LOSS_BOUND = CONNECT_TIMEOUT + 30


def test_scheduler_host_cut_off(cluster: Cluster, tmp_path: Path) -> None:
    """The scheduler's host goes away under a pending map: SchedulerLost within the
    bound, never a hang; a new connection says SchedulerUnreachable within its
    connect_timeout; the caller exits with no thread left."""
    folder, out = tmp_path / "ran", tmp_path / "out.json"
    folder.mkdir()
    proc = _caller(cluster, "lose", folder, out)
    list(_lines(proc, "progress", 180))
    cluster.net.cut("sched")
    assert proc.stdin is not None
    proc.stdin.write(b"cut\n")
    proc.stdin.flush()
    list(_lines(proc, "done", LOSS_BOUND + 120))
    assert proc.wait(timeout=60) == 0  # exits: nothing left running in the caller
    report = json.loads(out.read_text())
    print(
        f"scheduler cut off: {report['outcome'][:80]!r} after {report['lost_after']:.1f} s; "
        f"reconnect: {report['again']} after {report['unreachable_after']:.1f} s"
    )
    assert report["outcome"].startswith("SchedulerLost"), report["outcome"]
    assert report["lost_after"] < LOSS_BOUND
    assert report["again"] == "SchedulerUnreachable"
    assert report["unreachable_after"] < 3 + 30
    assert report["threads"] == []
