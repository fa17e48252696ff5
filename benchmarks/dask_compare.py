"""anyexec's dask backend beside raw dask, each target as a ratio measured in one run.

    python benchmarks/dask_compare.py --out build/dask_compare.md

Raw dask runs beside anyexec, interleaved (A, B, A, B, ...), so machine noise hits both;
each figure is a median. "Raw dask" is what a dask user writes: ``distributed.LocalCluster``
(its scheduler in the calling process, no TLS) and ``client.gather(client.map(...))``.
Where the same cluster matters (the wrapper cost), raw ``client.map`` also runs on
anyexec's own embedded cluster, through anyexec's client. Sections:

1. start-up: the embedded cluster (a host subprocess, TLS with temporary credentials)
   against the in-process LocalCluster the backend used to start, with and without TLS;
2. memory: peak caller RSS growth over a 10,000,000-item map, every backend; the dask
   host's growth; and, against an external ``dask scheduler``, a 1,000,000-item map;
3. wrapper cost: 100 × 10 ms, chunksize 1, against raw ``client.map`` + ``gather``;
4. waiting work: S = T(1 worker) / T(4 workers) on the bench's io workload (64 × 10 ms);
5. CPU work: E = Ts / (2 · Tp) on 64 × ~20 ms, against process, loky and raw dask;
6. arrays: 16 fresh 50 MiB arrays, ``arr.sum()``, against joblib's memmapping;
7. Ctrl-C: SIGINT to a script in a bare ``anyexec.map``; seconds to exit, processes and
   ``/dev/shm`` files left; raw dask's script beside it.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import distributed
import numpy as np
import psutil
import tasks

import anyexec
from anyexec.workloads import WORKLOADS

OUT: list[str] = []


def say(line: str = "") -> None:
    print(line, flush=True)
    OUT.append(line)


def table(head: list[str], rows: list[list[str]]) -> None:
    say("| " + " | ".join(head) + " |")
    say("|" + "|".join("---" if i == 0 else "---:" for i in range(len(head))) + "|")
    for r in rows:
        say("| " + " | ".join(r) + " |")
    say()


def timed(fn: Callable[[], Any]) -> float:
    gc.collect()
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def interleaved(runs: dict[str, Callable[[], Any]], repeat: int) -> dict[str, float]:
    """Median seconds of each run, the runs taken in turn ``repeat`` times."""
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(repeat):
        for label, fn in runs.items():
            times[label].append(timed(fn))
    return {k: statistics.median(v) for k, v in times.items()}


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


class Plain:
    """Raw dask as its users start it: a LocalCluster, scheduler in this process."""

    def __init__(self, workers: int, security: Any = None) -> None:
        self.cluster = distributed.LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
            scheduler_kwargs={"dashboard": False},
            silence_logs=logging.CRITICAL,
            security=security,
        )
        self.client = distributed.Client(self.cluster, set_as_default=False, security=security)

    def map(self, fn: Callable[..., Any], xs: list[Any]) -> list[Any]:
        return list(self.client.gather(self.client.map(fn, xs, pure=False)))

    def close(self) -> None:
        self.client.close()
        self.cluster.close()


@contextmanager
def plain(workers: int) -> Iterator[Plain]:
    p = Plain(workers)
    try:
        yield p
    finally:
        p.close()


def dask_ex(workers: int = 2, **options: Any) -> anyexec.Executor:
    return anyexec.Executor("dask", workers, **options).start()


def raw_on(ex: anyexec.Executor, fn: Callable[..., Any], xs: list[Any]) -> list[Any]:
    """Raw client.map + gather on anyexec's own cluster, through its client."""
    client = ex._pool.inner.client  # type: ignore[union-attr]
    return list(client.gather(client.map(fn, xs, pure=False)))


# -- 1. start-up ----------------------------------------------------------------------------


def section_startup(repeat: int) -> None:
    say("## 1. Start-up: create the cluster, get one result, close it (2 workers)")
    say()

    def before(tls: bool) -> Callable[[], None]:
        def run() -> None:
            security = distributed.Security.temporary() if tls else None
            p = Plain(2, security)
            assert p.client.submit(tasks.noop, 1).result() == 1
            p.close()

        return run

    def after() -> None:
        with anyexec.Executor("dask", 2) as ex:
            assert ex.submit(tasks.noop, 1).result() == 1

    t = interleaved(
        {
            "before: LocalCluster in the caller, no TLS": before(False),
            "LocalCluster in the caller, TLS (temporary credentials)": before(True),
            "after: anyexec's embedded cluster (host subprocess, TLS)": after,
        },
        repeat,
    )
    say("In this process, `distributed` already imported:")
    say()
    table(["cluster", "seconds (median)"], [[k, f"{v:.2f}"] for k, v in t.items()])
    base, tls, now = t.values()
    say(f"- TLS with per-cluster temporary credentials costs {tls / base:.2f}× start-up")
    say(f"- after / before: {now / base:.2f}× (the host subprocess imports `distributed`)")
    say()
    # The first dask map of a program pays the imports too: each side in a fresh
    # interpreter, timed from its start to after close (benchmarks/startup.py's samples).
    import startup

    ours, raw = (c.format(workers=2) for c in startup.CASES["dask"])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    fresh: dict[str, list[float]] = {"anyexec": [], "raw": []}
    with tempfile.TemporaryDirectory() as cwd:  # no config file in reach
        for run in range(-1, repeat):  # run -1 warms the file caches, not counted
            took = startup.sample(raw, env, cwd)[0], startup.sample(ours, env, cwd)[0]
            if run >= 0:
                fresh["raw"].append(took[0])
                fresh["anyexec"].append(took[1])
    f_raw, f_ours = (statistics.median(fresh[k]) for k in ("raw", "anyexec"))
    say("In a fresh interpreter each, imports counted (interpreter start to after close):")
    say()
    table(
        ["program", "seconds (median)"],
        [
            ["before: `LocalCluster` + `Client` in the caller", f"{f_raw:.2f}"],
            ["after: `anyexec.Executor('dask')`, embedded cluster", f"{f_ours:.2f}"],
        ],
    )
    ratio = f_ours / f_raw
    say(f"- after / before: {ratio:.2f}× (target ≤ 1.5×): {verdict(ratio <= 1.5)}")
    say()


# -- 2. memory ------------------------------------------------------------------------------


def peak_growth(run: Callable[[], int], watch: list[psutil.Process]) -> tuple[float, list[float]]:
    """Seconds, and the peak RSS growth (MiB) of each watched process over ``run``."""
    gc.collect()
    base = [p.memory_info().rss for p in watch]
    peak = list(base)
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            for i, p in enumerate(watch):
                try:
                    peak[i] = max(peak[i], p.memory_info().rss)
                except psutil.Error:
                    pass
            time.sleep(0.01)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    t = time.perf_counter()
    run()
    elapsed = time.perf_counter() - t
    stop.set()
    watcher.join()
    return elapsed, [(pk - b) / 2**20 for pk, b in zip(peak, base)]


def count_map(ex: anyexec.Executor, items: int) -> Callable[[], int]:
    def run() -> int:
        n = 0
        for _ in ex.map(tasks.noop, (i for i in range(items))):
            n += 1
        assert n == items
        return n

    return run


def section_memory(backends: list[str], items: int, external_items: int) -> None:
    say(f"## 2. Memory: map over a {items:,}-item generator (no-op tasks, 2 workers)")
    say()
    me = psutil.Process()
    rows = []
    for b in backends:  # an empty list: only the external scheduler below
        with anyexec.Executor(b, 2) as ex:
            list(ex.map(tasks.noop, range(1000)))
            watch = [me]
            if b == "dask":
                watch.append(psutil.Process(ex._pool.inner.host.pid))  # type: ignore[union-attr]
            secs, growth = peak_growth(count_map(ex, items), watch)
        host = f"{growth[1]:.1f}" if len(growth) > 1 else "-"
        rows.append(
            [b, f"{secs:.1f}", f"{growth[0]:.1f}", host, verdict(growth[0] < 50).replace("*", "")]
        )
    if rows:
        table(
            [
                "backend",
                "seconds",
                "caller peak RSS growth MiB",
                "dask host growth MiB",
                "< 50 MiB",
            ],
            rows,
        )

    say(f"Against an external `dask scheduler` (2 `dask worker`s), {external_items:,} items:")
    say()
    with tempfile.TemporaryDirectory() as folder:
        sched_file = Path(folder, "scheduler.json")
        cli = [str(Path(sys.executable).with_name("dask"))]
        # The scheduler unpickles the task graph: it must import this folder's modules.
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        procs = [
            subprocess.Popen(
                [
                    *cli,
                    "scheduler",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    "0",
                    "--no-dashboard",
                    "--scheduler-file",
                    str(sched_file),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=env,
            )
        ]
        try:
            while not sched_file.exists():
                time.sleep(0.1)
            time.sleep(0.5)
            address = json.loads(sched_file.read_text())["address"]
            for _ in range(2):
                procs.append(
                    subprocess.Popen(
                        [
                            *cli,
                            "worker",
                            address,
                            "--nthreads",
                            "1",
                            "--no-dashboard",
                            "--host",
                            "127.0.0.1",
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        env=env,
                    )
                )
            with anyexec.Executor("dask", 2, address=address).start() as ex:
                inner = ex._pool.inner  # type: ignore[union-attr]
                inner.client.wait_for_workers(2, timeout=120)
                list(ex.map(tasks.noop, range(1000)))
                sched = psutil.Process(procs[0].pid)
                secs, growth = peak_growth(count_map(ex, external_items), [me, sched])
                held = (
                    len(inner.client.futures),
                    len(inner.client.refcount),
                    len(inner._pending),
                    inner.client.run_on_scheduler(_scheduler_sizes),
                )
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(timeout=60)
    say(
        f"- {secs:.1f} s; caller peak RSS growth {growth[0]:.1f} MiB, scheduler process "
        f"{growth[1]:.1f} MiB"
    )
    say(
        f"- held after the map: client futures {held[0]}, client refcounts {held[1]}, "
        f"anyexec pending {held[2]}; scheduler tasks {held[3][0]}, task groups "
        f"{held[3][1]}, transition log {held[3][2]} (dask's own cap)"
    )
    say()


def _scheduler_sizes(dask_scheduler: Any) -> tuple[int, int, int]:
    s = dask_scheduler
    return len(s.tasks), len(s.task_groups), len(s.transition_log)


# -- 3. wrapper cost ------------------------------------------------------------------------


def section_wrapper(repeat: int) -> None:
    say("## 3. Wrapper cost: 100 × sleep(10 ms), chunksize 1, 2 workers")
    say()
    xs = list(range(100))
    with dask_ex() as ex, plain(2) as p:
        for _ in range(2):  # warm both
            list(ex.map(tasks.sleep10ms, xs, chunksize=1))
            p.map(tasks.sleep10ms, xs)
        t = interleaved(
            {
                "anyexec dask (embedded cluster)": lambda: list(
                    ex.map(tasks.sleep10ms, xs, chunksize=1)
                ),
                "raw client.map + gather, same cluster": lambda: raw_on(ex, tasks.sleep10ms, xs),
                "raw client.map + gather, plain LocalCluster": lambda: p.map(tasks.sleep10ms, xs),
            },
            repeat,
        )
    table(["run", "seconds (median)"], [[k, f"{v:.3f}"] for k, v in t.items()])
    ours, same, plain_t = t.values()
    say(
        f"- against raw dask on the same cluster: {100 * (ours / same - 1):+.1f}% "
        f"(target ≤ +3%): {verdict(ours / same <= 1.03)}"
    )
    say(f"- against raw dask on a plain LocalCluster: {100 * (ours / plain_t - 1):+.1f}%")
    say()


# -- 4. waiting work ------------------------------------------------------------------------


def section_io(repeat: int) -> None:
    w = WORKLOADS["io"]
    xs, fn = w.inputs(), w.task()
    say(f"## 4. Waiting work: the bench's io workload, {len(xs)} × {w.size} s, 1 and 4 workers")
    say()
    rows = []
    speedups = {}
    for label in ("anyexec dask", "raw dask client.map"):
        t = {}
        for n in (1, 4):
            if label == "anyexec dask":
                with dask_ex(n) as ex:
                    list(ex.map(fn, xs))
                    t[n] = interleaved({"x": lambda ex=ex: list(ex.map(fn, xs))}, repeat)["x"]
            else:
                with plain(n) as p:
                    p.map(fn, xs)
                    t[n] = interleaved({"x": lambda p=p: p.map(fn, xs)}, repeat)["x"]
        speedups[label] = t[1] / t[4]
        rows.append([label, f"{t[1]:.3f}", f"{t[4]:.3f}", f"{t[1] / t[4]:.2f}"])
    table(["run", "T1 s", "T4 s", "S = T1/T4"], rows)
    s = speedups["anyexec dask"]
    say(f"- anyexec dask S at 4 workers: {s:.2f} (target ≥ 3.5): {verdict(s >= 3.5)}")
    say()


# -- 5. CPU work ----------------------------------------------------------------------------


def section_cpu(repeat: int) -> None:
    xs = list(range(64))
    say("## 5. CPU work: 64 × ~20 ms of pure Python, 2 workers, E = Ts / (2 · Tp)")
    say()
    serial = statistics.median(
        timed(lambda: [tasks.cpu20ms(x) for x in xs]) for _ in range(max(1, repeat // 2))
    )
    runs: dict[str, Callable[[], Any]] = {}
    opened = []
    for b in ("process", "loky", "dask"):
        try:
            ex = anyexec.Executor(b, 2).start()
        except anyexec.BackendNotFound:
            continue
        opened.append(ex)
        list(ex.map(tasks.cpu20ms, xs))
        runs[f"anyexec {b}"] = lambda ex=ex: list(ex.map(tasks.cpu20ms, xs))
    p = Plain(2)
    p.map(tasks.cpu20ms, xs)
    runs["raw dask client.map"] = lambda: p.map(tasks.cpu20ms, xs)
    try:
        t = interleaved(runs, repeat)
    finally:
        for ex in opened:
            ex.shutdown()
        p.close()
    eff = {k: serial / (2 * v) for k, v in t.items()}
    table(["run", "Tp s", "E"], [[k, f"{t[k]:.3f}", f"{eff[k]:.2f}"] for k in t])
    best_peer = max(v for k, v in eff.items() if k != "anyexec dask")
    ours = eff["anyexec dask"]
    say(f"- serial Ts {serial:.3f} s")
    say(
        f"- anyexec dask E {ours:.2f} against the best of the others {best_peer:.2f}: "
        f"{ours / best_peer:.2f} (target ≥ 0.90): {verdict(ours >= 0.9 * best_peer)}"
    )
    say(f"- raw dask's own E: {eff['raw dask client.map']:.2f}")
    say()


# -- 6. arrays ------------------------------------------------------------------------------


def section_arrays(repeat: int) -> None:
    say("## 6. Arrays: 16 fresh 50 MiB float64 arrays, arr.sum(), 2 workers")
    say()
    n = 50 * 2**20 // 8
    expected = [float(i) * n for i in range(16)]

    def fresh() -> list[Any]:
        return [np.full(n, float(i)) for i in range(16)]

    try:
        import joblib
    except ImportError:
        say("joblib is not installed (pip install joblib): section skipped")
        say()
        return

    def joblib_run(arrays: list[Any]) -> list[Any]:
        return list(joblib.Parallel(n_jobs=2)(joblib.delayed(tasks.array_sum)(a) for a in arrays))

    times: dict[str, list[float]] = {}

    def record(label: str, run: Callable[[list[Any]], list[Any]]) -> None:
        arrays = fresh()  # fresh every time: no cache can help
        gc.collect()
        t = time.perf_counter()
        got = run(arrays)
        times.setdefault(label, []).append(time.perf_counter() - t)
        assert got == expected, label

    with dask_ex() as ex, plain(2) as p:
        list(ex.map(tasks.noop, range(4)))
        joblib_run(fresh()[:2])
        for _ in range(repeat):
            record("anyexec dask", lambda a: list(ex.map(tasks.array_sum, a)))
            record("joblib loky, memmapping", joblib_run)
            record("raw dask client.map (plain LocalCluster)", lambda a: p.map(tasks.array_sum, a))
    med = {k: statistics.median(v) for k, v in times.items()}
    table(["run", "seconds (median)"], [[k, f"{v:.3f}"] for k, v in med.items()])
    ratio = med["joblib loky, memmapping"] / med["anyexec dask"]
    say(f"- anyexec dask: {ratio:.2f}× joblib memmapping (target ≥ 1): {verdict(ratio >= 1)}")
    raw = med["joblib loky, memmapping"] / med["raw dask client.map (plain LocalCluster)"]
    say(f"- raw dask: {raw:.2f}× joblib memmapping")
    say()


# -- 7. Ctrl-C ------------------------------------------------------------------------------

_ANYEXEC_SCRIPT = """
import os, sys, time, anyexec
def work(i):
    time.sleep(0.2)
    return i
if __name__ == "__main__":
    it = anyexec.map(work, range(2000), chunksize=1)
    next(it)
    print(anyexec.current()._pool.inner.host.pid, flush=True)
    for _ in it:
        pass
"""

_RAW_SCRIPT = """
import os, sys, time, logging, distributed
def work(i):
    time.sleep(0.2)
    return i
if __name__ == "__main__":
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1",
                                       dashboard_address="127.0.0.1:0",
                                       silence_logs=logging.CRITICAL)
    client = distributed.Client(cluster)
    futures = client.map(work, range(2000), pure=False)
    futures[0].result()
    print(os.getpid(), flush=True)
    client.gather(futures)
"""


def _descendants_alive(pids: set[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.Error:
            pass
    return alive


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _interrupt(script: str, group_from_line: bool) -> tuple[float, float, int, int]:
    """Run ``script``; SIGINT once it printed a pid; seconds to exit, seconds until its
    processes are gone (or 30), processes left, /dev/shm files left."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder, "s.py")
        path.write_text(script)
        env = {**os.environ, "ANYEXEC_BACKEND": "dask", "ANYEXEC_WORKERS": "2"}
        proc = subprocess.Popen(
            [sys.executable, str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
            # a script started from a background job inherits SIGINT ignored
            preexec_fn=_default_sigint,
        )
        assert proc.stdout is not None
        pid = int(proc.stdout.readline())
        # every process of the run: the script's descendants, and the host's group
        family = {p.pid for p in psutil.Process(proc.pid).children(recursive=True)}
        if group_from_line:
            family |= {pid} | {p.pid for p in psutil.Process(pid).children(recursive=True)}
        t = time.perf_counter()
        os.kill(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        exited = time.perf_counter() - t
        while _descendants_alive(family) and time.perf_counter() - t < 30:
            time.sleep(0.02)
        gone = time.perf_counter() - t
        left = _descendants_alive(family)
        for p in left:
            os.kill(p, signal.SIGKILL)
        shm = len(list(Path("/dev/shm").glob(f"anyexec-{proc.pid}-*")))
    return exited, gone, len(left), shm


def section_interrupt(repeat: int) -> None:
    say("## 7. Ctrl-C: SIGINT during a long map (2,000 × 0.2 s, 2 workers)")
    say()
    rows = []
    results = {}
    for label, script, host in [
        ("anyexec.map (bare), dask", _ANYEXEC_SCRIPT, True),
        ("raw dask client.map + gather", _RAW_SCRIPT, False),
    ]:
        runs = [_interrupt(script, host) for _ in range(repeat)]
        exited = statistics.median(r[0] for r in runs)
        gone = statistics.median(r[1] for r in runs)
        left = max(r[2] for r in runs)
        shm = max(r[3] for r in runs)
        results[label] = (exited, left, shm)
        rows.append([label, f"{exited:.2f}", f"{gone:.2f}", str(left), str(shm)])
    table(["run", "exit s (median)", "all processes gone s", "processes left", "/dev/shm"], rows)
    exited, left, shm = results["anyexec.map (bare), dask"]
    ok = exited <= 2 and left == 0 and shm == 0
    say(f"- anyexec: exits in {exited:.2f} s, {left} processes and {shm} files left: {verdict(ok)}")
    say()


# -- main -----------------------------------------------------------------------------------


def versions() -> str:
    out = []
    for dist in ("anyexec", "dask", "distributed", "loky", "joblib", "numpy"):
        try:
            out.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            pass
    return ", ".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="also write the report (markdown) here")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--items", type=int, default=10_000_000)
    parser.add_argument("--external-items", type=int, default=1_000_000)
    parser.add_argument("--memory-backends", default="serial,thread,process,asyncio,loky,dask")
    parser.add_argument("--sections", default="1,2,3,4,5,6,7")
    args = parser.parse_args()
    say("# anyexec dask against raw dask")
    say()
    say(
        f"Machine: {os.cpu_count()} cores, {platform.platform()}, Python "
        f"{platform.python_version()}; {versions()}. Medians of {args.repeat} interleaved runs."
    )
    say()
    sections: dict[str, Callable[[], None]] = {
        "1": lambda: section_startup(args.repeat),
        "2": lambda: section_memory(
            [b for b in args.memory_backends.split(",") if b], args.items, args.external_items
        ),
        "3": lambda: section_wrapper(args.repeat + 2),
        "4": lambda: section_io(args.repeat),
        "5": lambda: section_cpu(args.repeat),
        "6": lambda: section_arrays(args.repeat),
        "7": lambda: section_interrupt(3),
    }
    for key in args.sections.split(","):
        sections[key.strip()]()
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(OUT) + "\n")


if __name__ == "__main__":
    main()
