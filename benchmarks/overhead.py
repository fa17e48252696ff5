"""What anyexec costs per item, and what fresh large arrays cost, beside the raw tools.

    python benchmarks/overhead.py --rounds 5 --out build/overhead.md

Every tool runs in its own fresh interpreter (``--run TOOL``), so no tool disturbs another
(loky's reusable pool is replaced whenever its arguments change; a dask cluster would take
CPU from the others), and rounds interleave the tools, so a core whose speed drifts hits
every tool alike. Each child warms up first (start-up is not part of these figures; see
``benchmarks/startup.py``), then times ``--repeat`` runs and reports their median; the
table gives the median over rounds and the ratio to the peer measured in the same rounds.

Sections: no-op tasks (100,000 items, 2 workers) against ``multiprocessing.Pool`` (fork,
automatic chunks) and a plain loop; thread and asyncio against the best raw tool for each;
10 ms tasks with chunksize 1 (asyncio against an anyio portal); 16 × 50 MiB fresh arrays,
creation plus map, against joblib's memmapping.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import tasks

P = 2
ARRAYS, ARRAY_ITEMS = 16, 50 * 2**20 // 8


def _timed(run: Callable[[], Any], repeat: int) -> float:
    run()  # warm: pools started, chunk sizes learnt, code paths loaded
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# -- the tools, each run in a child interpreter --------------------------------------------


def tool_loop(n: int, repeat: int) -> float:
    xs = range(n)
    return _timed(lambda: [tasks.noop(x) for x in xs], repeat)


def _anyexec(backend: str, fn: Callable[..., Any], n: int, repeat: int, **kw: Any) -> float:
    import anyexec

    with anyexec.Executor(backend, workers=1 if backend == "serial" else P) as ex:
        xs = range(n)
        return _timed(lambda: list(ex.map(fn, xs, **kw)), repeat)


def tool_serial(n: int, repeat: int) -> float:
    return _anyexec("serial", tasks.noop, n, repeat)


def tool_process(n: int, repeat: int) -> float:
    return _anyexec("process", tasks.noop, n, repeat)


def tool_loky(n: int, repeat: int) -> float:
    return _anyexec("loky", tasks.noop, n, repeat)


def tool_thread(n: int, repeat: int) -> float:
    return _anyexec("thread", tasks.noop, n, repeat)


def tool_asyncio(n: int, repeat: int) -> float:
    return _anyexec("asyncio", tasks.anoop, n, repeat)


def tool_pool(n: int, repeat: int) -> float:
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(P) as pool:
        xs = range(n)
        return _timed(lambda: pool.map(tasks.noop, xs), repeat)


def tool_thread_raw(n: int, repeat: int) -> float:
    """The best raw thread tool for no-ops: a ThreadPoolExecutor over hand-made chunks
    (its own ``map`` ignores chunksize and costs ~20 µs per item)."""
    import concurrent.futures as cf

    def chunk(lo: int, hi: int) -> list[Any]:
        return [tasks.noop(x) for x in range(lo, hi)]

    size = max(1, n // (4 * P))
    with cf.ThreadPoolExecutor(P) as pool:

        def run() -> list[Any]:
            futs = [pool.submit(chunk, lo, min(n, lo + size)) for lo in range(0, n, size)]
            return [x for f in futs for x in f.result()]

        return _timed(run, repeat)


def tool_asyncio_raw(n: int, repeat: int) -> float:
    """The best raw asyncio tool for coroutine no-ops: one portal call that awaits
    chunks of coroutines in a task group inside the loop."""
    import anyio
    from anyio.from_thread import start_blocking_portal

    async def all_of(xs: range) -> list[Any]:
        out: list[Any] = [None] * len(xs)

        async def part(lo: int, hi: int) -> None:
            for i in range(lo, hi):
                out[i] = await tasks.anoop(xs[i])

        size = max(1, len(xs) // P)
        async with anyio.create_task_group() as tg:
            for lo in range(0, len(xs), size):
                tg.start_soon(part, lo, min(len(xs), lo + size))
        return out

    with start_blocking_portal() as portal:
        return _timed(lambda: portal.call(all_of, range(n)), repeat)


def tool_asyncio_10ms(n: int, repeat: int) -> float:
    return _anyexec("asyncio", tasks.sleep10ms, n, repeat, chunksize=1)


def tool_portal_10ms(n: int, repeat: int) -> float:
    """anyio's portal, one call per task, at most P at once in worker threads: what the
    asyncio backend does for plain functions with chunksize 1."""
    import anyio
    import anyio.to_thread
    from anyio.from_thread import start_blocking_portal

    with start_blocking_portal() as portal:

        async def make() -> anyio.CapacityLimiter:
            return anyio.CapacityLimiter(P)

        limiter = portal.call(make)

        async def one(x: Any) -> Any:
            return await anyio.to_thread.run_sync(tasks.sleep10ms, x, limiter=limiter)

        def run() -> list[Any]:
            futs = [portal.start_task_soon(one, x) for x in range(n)]
            return [f.result() for f in futs]

        return _timed(run, repeat)


def _filled(make: Callable[[], Any]) -> list[Any]:
    out = []
    for i in range(ARRAYS):
        a = make()
        a.fill(float(i))
        out.append(a)
    return out


def tool_arrays_anyexec(n: int, repeat: int) -> float:
    """Fresh arrays made with anyexec.shared_array, filled, then summed on process."""
    import anyexec

    with anyexec.Executor("process", workers=P) as ex:
        return _timed(
            lambda: list(
                ex.map(tasks.array_sum, _filled(lambda: anyexec.shared_array(ARRAY_ITEMS)))
            ),
            repeat,
        )


def tool_arrays_anyexec_plain(n: int, repeat: int) -> float:
    """Fresh plain numpy arrays (np.empty + fill), summed on process (one copy each)."""
    import numpy as np

    import anyexec

    with anyexec.Executor("process", workers=P) as ex:
        return _timed(
            lambda: list(ex.map(tasks.array_sum, _filled(lambda: np.empty(ARRAY_ITEMS)))),
            repeat,
        )


def tool_arrays_joblib(n: int, repeat: int) -> float:
    """Fresh plain numpy arrays summed by joblib (loky, automatic memmapping)."""
    import joblib
    import numpy as np

    def run() -> list[Any]:
        arrays = _filled(lambda: np.empty(ARRAY_ITEMS))
        return joblib.Parallel(n_jobs=P)(joblib.delayed(tasks.array_sum)(a) for a in arrays)

    return _timed(run, repeat)


def tool_create_shared(n: int, repeat: int) -> float:
    import anyexec

    return _timed(lambda: _filled(lambda: anyexec.shared_array(ARRAY_ITEMS)), repeat)


def tool_create_empty(n: int, repeat: int) -> float:
    import numpy as np

    return _timed(lambda: _filled(lambda: np.empty(ARRAY_ITEMS)), repeat)


TOOLS = {name[5:]: fn for name, fn in globals().items() if name.startswith("tool_")}

#: (section, anyexec tool, peer tool, items, the target as "ours / peer at most")
COMPARISONS = [
    ("no-op tasks, µs per item", "process", "pool", 100_000, 1.5),
    ("no-op tasks, µs per item", "loky", "pool", 100_000, 1.5),
    ("no-op tasks, µs per item", "serial", "loop", 100_000, 3.0),
    ("no-op tasks, µs per item", "thread", "thread_raw", 100_000, None),
    ("no-op tasks, µs per item", "asyncio", "asyncio_raw", 100_000, None),
    ("10 ms tasks, chunksize 1, µs per item", "asyncio_10ms", "portal_10ms", 100, 1.03),
    ("16 × 50 MiB fresh arrays, creation + map, ms", "arrays_anyexec", "arrays_joblib", 1, 1 / 3),
    (
        "16 × 50 MiB fresh arrays, creation + map, ms",
        "arrays_anyexec_plain",
        "arrays_joblib",
        1,
        None,
    ),
    ("16 × 50 MiB arrays, creation + fill only, ms", "create_shared", "create_empty", 1, 1.0),
]


def child(tool: str, n: int, repeat: int) -> float:
    done = subprocess.run(
        [sys.executable, __file__, "--run", tool, "--items", str(n), "--repeat", str(repeat)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{tool} failed:\n{done.stderr[-3000:]}")
    return float(json.loads(done.stdout.strip().splitlines()[-1])["seconds"])


def versions() -> str:
    names = ["anyexec", "anyio", "loky", "joblib", "numpy"]
    found = []
    for name in names:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pass
    return ", ".join(found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help=argparse.SUPPRESS)
    parser.add_argument("--items", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per child")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--only", default="", help="comma-separated anyexec tools to compare")
    parser.add_argument("--out", type=Path, help="also write the report here")
    args = parser.parse_args()
    if args.run:
        print(json.dumps({"seconds": TOOLS[args.run](args.items, args.repeat)}))
        return
    wanted = [c for c in COMPARISONS if not args.only or c[1] in args.only.split(",")]
    samples: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for _, ours, peer, n, _ in wanted:
            for tool in (ours, peer):
                repeat = args.repeat if n > 1 else max(1, args.repeat // 2)
                samples.setdefault(tool, []).append(child(tool, n, repeat))
    lines = [
        f"`python benchmarks/overhead.py --rounds {args.rounds} --repeat {args.repeat}`, "
        f"{time.strftime('%Y-%m-%d')}, {platform.machine()} with "
        f"{__import__('os').cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{versions()}; medians of {args.rounds} interleaved rounds, each tool in its own "
        f"interpreter.",
        "",
        "| measure | anyexec | peer | anyexec | peer | ratio | target | |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    for section, ours, peer, n, target in wanted:
        scale = 1e6 / n if "µs" in section else 1e3
        a = statistics.median(samples[ours]) * scale
        b = statistics.median(samples[peer]) * scale
        ratio = a / b
        verdict = "" if target is None else ("met" if ratio <= target else "MISSED")
        shown = "-" if target is None else f"≤ {target:.2f}×"
        lines.append(
            f"| {section} | {ours} | {peer} | {a:,.3f} | {b:,.3f} | {ratio:.2f}× | {shown} "
            f"| {verdict} |"
        )
    report = "\n".join(lines)
    print(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report + "\n")


if __name__ == "__main__":
    main()
