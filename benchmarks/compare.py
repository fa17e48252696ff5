"""anyexec side by side with the tools it replaces, in one run, on one machine.

    python benchmarks/compare.py --out build/compare.md

Every figure is the median of ``--repeat`` runs measured in this process; each comparison
is a ratio of two figures from the same run. Sections:

1. the default bench workloads (cpu, io, tiny) through anyexec and raw concurrent.futures,
   loky, joblib (loky and threading) and dask's own client.map;
2. tiny tasks: per-task overhead of no-ops (issue targets: process and loky ≥ 3× joblib
   throughput, thread ≥ 10× raw ThreadPoolExecutor.map, asyncio ≥ 5× one portal call per
   task, dask ≥ 50× naive client.map);
3. CPU-bound 20 ms tasks: efficiency against raw pools, loky, joblib and mpire;
4. thin wrapper: 10 ms tasks with the same chunksize, anyexec against the raw executor.

Measured elsewhere, each tool in an interpreter of its own: per-item cost and fresh arrays
(``overhead.py``), start-up with the first cycle counted (``startup.py``), memory over a
10,000,000-item map on every backend and every dask target (``dask_compare.py``).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import functools
import gc
import logging
import multiprocessing
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import tasks

import anyexec
from anyexec.workloads import WORKLOADS

P = 2
OUT: list[str] = []


def say(line: str = "") -> None:
    print(line, flush=True)
    OUT.append(line)


def med(fn: Callable[[], Any], repeat: int) -> tuple[float, float, float]:
    times: list[float] = []
    for _ in range(repeat):
        gc.collect()
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), min(times), max(times)


def table(head: list[str], rows: list[list[str]]) -> None:
    say("| " + " | ".join(head) + " |")
    say("|" + "|".join("---" if i == 0 else "---:" for i in range(len(head))) + "|")
    for r in rows:
        say("| " + " | ".join(r) + " |")
    say()


def have(module: str) -> bool:
    try:
        __import__(module)
        return True
    except ImportError:
        return False


# -- the peers ------------------------------------------------------------------------------


def joblib_run(
    fn: Callable[..., Any], xs: list[Any], backend: str = "loky", **kw: Any
) -> list[Any]:
    import joblib

    return list(joblib.Parallel(n_jobs=P, backend=backend, **kw)(joblib.delayed(fn)(x) for x in xs))


class Dask:
    """One embedded cluster for dask's own client.map and for anyexec's dask backend."""

    def __init__(self) -> None:
        import distributed

        self.cluster = distributed.LocalCluster(
            n_workers=P,
            threads_per_worker=1,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
            silence_logs=logging.ERROR,
        )
        self.client = distributed.Client(self.cluster, set_as_default=False)
        self.address = self.cluster.scheduler_address

    def naive(self, fn: Callable[..., Any], xs: list[Any]) -> list[Any]:
        return list(self.client.gather(self.client.map(fn, xs, pure=False)))

    def close(self) -> None:
        self.client.close()
        self.cluster.close()


def raw_loky() -> Any:
    """A loky pool of its own for "raw loky" (None without loky). Not loky's reusable
    executor: joblib's loky backend uses that one with other arguments, and loky replaces
    it whenever the arguments change, so alternating the two would restart the workers on
    every switch and slow both down."""
    if not have("loky"):
        return None
    from loky import ProcessPoolExecutor

    pool = ProcessPoolExecutor(max_workers=P)
    list(pool.map(abs, range(2 * P)))  # workers started outside every timed run
    return pool


def anyexec_ex(backend: str, dask: Dask | None = None, workers: int = P) -> anyexec.Executor:
    if backend == "dask" and dask is not None:
        return anyexec.Executor("dask", workers, address=dask.address).start()
    return anyexec.Executor(backend, workers).start()


# -- sections -------------------------------------------------------------------------------


def section_workloads(backends: list[str], dask: Dask | None, repeat: int) -> None:
    say("## 1. The bench workloads, side by side (2 workers)")
    say()
    say("Tp in seconds (median), and S = Ts/Tp against a serial loop measured in the same run.")
    say()
    rows = []
    for name in ("cpu", "io", "tiny"):
        wl = WORKLOADS[name]
        fn, xs = wl.task(), wl.inputs()
        ts = med(lambda: [fn(x) for x in xs], repeat)[0]
        runs: dict[str, Callable[[], Any]] = {}
        execs = {b: anyexec_ex(b, dask) for b in backends}
        for b, ex in execs.items():
            runs[f"anyexec {b}"] = functools.partial(lambda ex: list(ex.map(fn, xs)), ex)
        tpe = cf.ThreadPoolExecutor(P)
        ppe = cf.ProcessPoolExecutor(P, mp_context=multiprocessing.get_context("forkserver"))
        list(ppe.map(fn, xs[:4]))
        runs["raw ThreadPoolExecutor.map"] = lambda: list(tpe.map(fn, xs))
        runs["raw ProcessPoolExecutor.map"] = lambda: list(ppe.map(fn, xs))
        lky = raw_loky()
        if lky is not None:
            runs["raw loky map"] = lambda: list(lky.map(fn, xs))
        if have("joblib"):
            runs["joblib loky"] = lambda: joblib_run(fn, xs)
            runs["joblib threading"] = lambda: joblib_run(fn, xs, "threading")
        if dask is not None:
            runs["dask client.map"] = lambda: dask.naive(fn, xs)
        for label, run in runs.items():
            warm = med(run, 1)[0]  # also tells how slow it is
            runs_here = repeat if warm < 2 else 1  # naive dask on 20,000 tiny tasks: once
            tp, lo, hi = med(run, runs_here)
            note = "" if runs_here == repeat else " (1 run)"
            rows.append([name, label, f"{tp:.3f}{note}", f"{ts / tp:.2f}"])
        tpe.shutdown()
        ppe.shutdown()
        if lky is not None:
            lky.shutdown()
        for ex in execs.values():
            ex.shutdown()
    table(["workload", "tool", "Tp s", "S"], rows)


def section_tiny(backends: list[str], dask: Dask | None, repeat: int) -> None:
    say("## 2. Tiny tasks: per-task overhead of no-ops (2 workers, default settings)")
    say()
    n = 100_000
    xs = list(range(n))
    rows = []
    results: dict[str, float] = {}

    def record(label: str, run: Callable[[], Any], count: int) -> None:
        warm = med(run, 1)[0]
        tp = med(run, repeat if warm < 2 else 1)[0]
        results[label] = tp / count * 1e6
        rows.append([label, f"{count:,}", f"{tp:.3f}", f"{tp / count * 1e6:,.2f}"])

    for b in [b for b in backends if b not in ("dask", "asyncio")]:
        with anyexec_ex(b) as ex:
            record(f"anyexec {b}", lambda: list(ex.map(tasks.noop, xs)), n)
    with anyexec_ex("asyncio") as ex:
        record("anyexec asyncio (coroutine no-ops)", lambda: list(ex.map(tasks.anoop, xs)), n)
    with cf.ThreadPoolExecutor(P) as tpe:
        record("raw ThreadPoolExecutor.map", lambda: list(tpe.map(tasks.noop, xs)), n)
    if have("joblib"):
        record("joblib loky (auto batching)", lambda: joblib_run(tasks.noop, xs), n)
        record("joblib threading", lambda: joblib_run(tasks.noop, xs, "threading"), n)
    ppe = cf.ProcessPoolExecutor(P, mp_context=multiprocessing.get_context("forkserver"))
    record(
        "raw ProcessPoolExecutor.map, chunksize=1000",
        lambda: list(ppe.map(tasks.noop, xs, chunksize=1000)),
        n,
    )
    ppe.shutdown()

    m = 10_000
    from anyio.from_thread import start_blocking_portal

    with start_blocking_portal() as portal:

        def per_task() -> list[Any]:
            futs = [portal.start_task_soon(tasks.anoop, x) for x in range(m)]
            return [f.result() for f in futs]

        record("anyio portal, one call per task", per_task, m)
    if dask is not None:
        ys = list(range(m))
        with anyexec_ex("dask", dask) as ex:
            record("anyexec dask", lambda: list(ex.map(tasks.noop, ys)), m)
        record("dask client.map + gather (naive)", lambda: dask.naive(tasks.noop, ys), m)
    table(["tool", "tasks", "Tp s", "µs per task"], rows)

    def ratio(a: str, b: str, target: float) -> list[str]:
        if a not in results or b not in results:
            return [a, b, "-", f"≥ {target:g}×", "not run"]
        r = results[b] / results[a]
        return [a, b, f"{r:,.1f}×", f"≥ {target:g}×", "met" if r >= target else "MISSED"]

    table(
        ["anyexec", "against", "throughput ratio", "target", ""],
        [
            ratio("anyexec process", "joblib loky (auto batching)", 3),
            ratio("anyexec loky", "joblib loky (auto batching)", 3),
            ratio("anyexec thread", "raw ThreadPoolExecutor.map", 10),
            ratio("anyexec asyncio (coroutine no-ops)", "anyio portal, one call per task", 5),
            ratio("anyexec dask", "dask client.map + gather (naive)", 50),
        ],
    )


def section_cpu(backends: list[str], dask: Dask | None, repeat: int) -> None:
    say("## 3. CPU-bound tasks of about 20 ms (2 workers)")
    say()
    probe = 100_000
    t = min(med(lambda: tasks.cpu20ms(1, probe), 5))
    steps = int(probe * 0.02 / t)
    fn = functools.partial(tasks.cpu20ms, steps=steps)
    xs = list(range(32))
    serial = [med(lambda: [fn(x) for x in xs], repeat)[0]]
    runs: dict[str, Callable[[], Any]] = {}
    execs = {b: anyexec_ex(b, dask) for b in backends if b in ("process", "loky", "dask")}
    for b, ex in execs.items():
        runs[f"anyexec {b}"] = functools.partial(lambda ex: list(ex.map(fn, xs)), ex)
    ppe = cf.ProcessPoolExecutor(P, mp_context=multiprocessing.get_context("forkserver"))
    runs["raw ProcessPoolExecutor.map"] = lambda: list(ppe.map(fn, xs))
    lky = raw_loky()
    if lky is not None:
        runs["raw loky map"] = lambda: list(lky.map(fn, xs))
    if have("joblib"):
        runs["joblib loky"] = lambda: joblib_run(fn, xs)
    mp_pool = None
    if have("mpire"):
        from mpire import WorkerPool

        mp_pool = WorkerPool(n_jobs=P, keep_alive=True)
        runs["mpire"] = lambda: mp_pool.map(fn, xs, progress_bar=False)
    rows = []
    for run in runs.values():
        run()  # warm
    samples: dict[str, list[float]] = {label: [] for label in runs}
    for _ in range(repeat):  # interleaved rounds: a drifting core speed hits every tool alike
        for label, run in runs.items():
            samples[label].append(med(run, 1)[0])
        serial.append(med(lambda: [fn(x) for x in xs], 1)[0])
    tps = {label: statistics.median(v) for label, v in samples.items()}
    ts = statistics.median(serial)
    for label, tp in tps.items():
        rows.append([label, f"{tp:.3f}", f"{ts / tp:.2f}", f"{ts / tp / P:.2f}"])
    say(
        f"{len(xs)} tasks of {steps:,} steps; Ts = {ts:.3f} s (median of {len(serial)} serial "
        f"measurements interleaved with the runs)."
    )
    say()
    table(["tool", "Tp s", "S", "E"], rows)
    peers = [tps[k] for k in tps if not k.startswith("anyexec")]
    best = min(peers)
    for label in [k for k in tps if k.startswith("anyexec")]:
        say(
            f"- {label}: E = {ts / tps[label] / P:.2f}, best peer E = {ts / best / P:.2f} "
            f"→ {'met' if tps[label] <= best * 1.0 else 'MISSED'} "
            f"(ratio of Tp {tps[label] / best:.3f})"
        )
    say()
    ppe.shutdown()
    if lky is not None:
        lky.shutdown()
    if mp_pool is not None:
        mp_pool.terminate()
    for ex in execs.values():
        ex.shutdown()


def section_thin(backends: list[str], dask: Dask | None, repeat: int) -> None:
    say("## 4. Thin wrapper: 10 ms tasks, same chunksize (1), 2 workers")
    say()
    xs = list(range(100))
    rows = []
    pairs: list[tuple[str, Callable[[], Any], Callable[[], Any]]] = []
    tpe = cf.ThreadPoolExecutor(P)
    ppe = cf.ProcessPoolExecutor(P, mp_context=multiprocessing.get_context("forkserver"))
    execs = {b: anyexec_ex(b, dask) for b in backends if b != "serial"}
    if "thread" in execs:
        pairs.append(
            (
                "thread",
                lambda: list(execs["thread"].map(tasks.sleep10ms, xs, chunksize=1)),
                lambda: list(tpe.map(tasks.sleep10ms, xs)),
            )
        )
    if "process" in execs:
        pairs.append(
            (
                "process",
                lambda: list(execs["process"].map(tasks.sleep10ms, xs, chunksize=1)),
                lambda: list(ppe.map(tasks.sleep10ms, xs, chunksize=1)),
            )
        )
    lky = raw_loky() if "loky" in execs else None
    if lky is not None:
        pairs.append(
            (
                "loky",
                lambda: list(execs["loky"].map(tasks.sleep10ms, xs, chunksize=1)),
                lambda: list(lky.map(tasks.sleep10ms, xs, chunksize=1)),
            )
        )
    if "dask" in execs and dask is not None:
        pairs.append(
            (
                "dask",
                lambda: list(execs["dask"].map(tasks.sleep10ms, xs, chunksize=1)),
                lambda: dask.naive(tasks.sleep10ms, xs),
            )
        )
    if "asyncio" in execs:
        import anyio.to_thread
        from anyio.from_thread import start_blocking_portal

        cm = start_blocking_portal()
        portal = cm.__enter__()

        async def make_limiter() -> Any:
            return anyio.CapacityLimiter(P)

        limiter = portal.call(make_limiter)

        async def in_thread(x: Any) -> Any:  # at most P at once, as anyexec's asyncio
            return await anyio.to_thread.run_sync(tasks.sleep10ms, x, limiter=limiter)

        def raw_portal() -> list[Any]:
            futs = [portal.start_task_soon(in_thread, x) for x in xs]
            return [f.result() for f in futs]

        pairs.append(
            (
                "asyncio",
                lambda: list(execs["asyncio"].map(tasks.sleep10ms, xs, chunksize=1)),
                raw_portal,
            )
        )
    for name, ours, raw in pairs:
        ours()
        raw()
        a, b = [], []
        for _ in range(repeat):  # interleaved, so drift hits both alike
            a.append(med(ours, 1)[0])
            b.append(med(raw, 1)[0])
        ta, tb = statistics.median(a), statistics.median(b)
        rows.append(
            [
                name,
                f"{ta:.3f}",
                f"{tb:.3f}",
                f"{(ta / tb - 1) * 100:+.1f}%",
                "met" if ta <= tb * 1.03 else "MISSED",
            ]
        )
    table(["backend", "anyexec Tp s", "raw Tp s", "anyexec vs raw", "within 3%"], rows)
    tpe.shutdown()
    ppe.shutdown()
    if lky is not None:
        lky.shutdown()
    for ex in execs.values():
        ex.shutdown()


def versions() -> str:
    out = []
    for d in ("anyexec", "anyio", "loky", "joblib", "dask", "distributed", "mpire", "numpy"):
        try:
            out.append(f"{d} {metadata.version(d)}")
        except metadata.PackageNotFoundError:
            pass
    return ", ".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write the markdown report here")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--sections", default="1,2,3,4")
    args = parser.parse_args()
    backends = [b.name for b in anyexec.backends() if b.available]
    say(f"Command: `python benchmarks/compare.py {' '.join(sys.argv[1:])}`".replace(" `", "`", 0))
    say()
    say(
        f"Machine: {os.cpu_count()} cores ({len(os.sched_getaffinity(0))} usable), "
        f"{platform.platform()}, Python {platform.python_version()}; {versions()}."
    )
    say()
    wanted = set(args.sections.split(","))
    dask = Dask() if "dask" in backends else None
    try:
        if "1" in wanted:
            section_workloads(backends, dask, args.repeat)
        if "2" in wanted:
            section_tiny(backends, dask, args.repeat)
        if "3" in wanted:
            section_cpu(backends, dask, args.repeat)
        if "4" in wanted:
            section_thin(backends, dask, args.repeat)
    finally:
        if dask is not None:
            dask.close()
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(OUT) + "\n")


if __name__ == "__main__":
    main()
