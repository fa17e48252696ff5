"""Start-up cost: the first ``Executor()`` + first result + close, in a fresh interpreter,
against the raw pool, in the environment as it is and with 300 more installed distributions.

Usage::

    python benchmarks/startup.py                 # every installed backend, 10 runs each
    python benchmarks/startup.py --runs 15 --dists 300 --backends thread,process
    python benchmarks/startup.py --compare /path/to/other/checkout/src   # and another version

Each sample is one new interpreter. What counts is the time from just before the
interpreter starts to just after the pool is closed ("to close"): the interpreter's own
start, every import (``import anyexec`` and what the first ``Executor()`` needs), starting
the pool, one call of ``int()`` and its result, and ``shutdown()``. The interpreter's exit is
timed too, in "whole" (start to exit, from outside). The raw pools are what a user of each
library writes: ``ThreadPoolExecutor``, ``ProcessPoolExecutor`` with forkserver (anyexec's
default start method), anyio's ``start_blocking_portal`` running the function in a worker
thread, ``loky.get_reusable_executor``, and dask's ``LocalCluster`` + ``Client``.

Bytecode caches are in place, as in an installed package (one warm-up run per case writes
them, and is not counted). Every sample runs in an empty temporary folder, so no config
file is found (a ``pyproject.toml`` would be read and checked, which is extra work by
design). The samples of every case are interleaved (run 1 of each case, then run 2, ...),
so a noisy machine disturbs every case alike; the median of the runs is reported, with the
ratio to the raw pool measured in the same loop.

"300 more distributions" are real distribution metadata: a folder of 300 ``*.dist-info``
directories (``METADATA`` and an ``entry_points.txt`` with console scripts and a plugin
group, as ordinary packages have) put on ``PYTHONPATH``. ``importlib.metadata`` reads them
exactly as it reads ``site-packages``, so a scan of every distribution's entry points pays
for each one, as it would in a large virtual environment.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Each case runs in a new interpreter and prints ``time.monotonic()`` right after the pool is
# closed; the parent takes the same clock just before it starts the interpreter (on Linux,
# macOS and Windows the monotonic clock is shared by every process), so the difference is
# "interpreter start to after close": start-up, imports, first result and close, everything
# but the interpreter's exit. ``{workers}`` is filled in.
_MAIN = "if __name__ == '__main__':\n"
CASES: dict[str, tuple[str, str]] = {
    "thread": (
        "import anyexec, time\n"
        "ex = anyexec.Executor('thread', workers={workers})\n"
        "ex.submit(int).result(); ex.shutdown()\n"
        "print(time.monotonic())\n",
        "import concurrent.futures as cf, time\n"
        "ex = cf.ThreadPoolExecutor({workers})\n"
        "ex.submit(int).result(); ex.shutdown()\n"
        "print(time.monotonic())\n",
    ),
    "process": (
        "import anyexec, time\n"
        + _MAIN
        + "    ex = anyexec.Executor('process', workers={workers})\n"
        "    ex.submit(int).result(); ex.shutdown()\n"
        "    print(time.monotonic())\n",
        # anyexec's process backend starts its workers with forkserver, so the raw pool does.
        "import concurrent.futures as cf, multiprocessing as mp, time\n"
        + _MAIN
        + "    ctx = mp.get_context('forkserver')\n"
        "    ex = cf.ProcessPoolExecutor({workers}, mp_context=ctx)\n"
        "    ex.submit(int).result(); ex.shutdown()\n"
        "    print(time.monotonic())\n",
    ),
    "asyncio": (
        "import anyexec, time\n"
        "ex = anyexec.Executor('asyncio', workers={workers})\n"
        "ex.submit(int).result(); ex.shutdown()\n"
        "print(time.monotonic())\n",
        # The same work: an event loop in its own thread (a blocking portal), the plain
        # function run in one of anyio's worker threads.
        "import time, anyio.to_thread\n"
        "from anyio.from_thread import start_blocking_portal\n"
        "with start_blocking_portal() as portal:\n"
        "    portal.call(anyio.to_thread.run_sync, int)\n"
        "print(time.monotonic())\n",
    ),
    "loky": (
        "import anyexec, time\n" + _MAIN + "    ex = anyexec.Executor('loky', workers={workers})\n"
        "    ex.submit(int).result(); ex.shutdown()\n"
        "    print(time.monotonic())\n",
        "import loky, time\n"
        + _MAIN
        + "    ex = loky.get_reusable_executor(max_workers={workers})\n"
        "    ex.submit(int).result(); ex.shutdown()\n"
        "    print(time.monotonic())\n",
    ),
    "dask": (
        "import anyexec, time\n" + _MAIN + "    ex = anyexec.Executor('dask', workers={workers})\n"
        "    ex.submit(int).result(); ex.shutdown()\n"
        "    print(time.monotonic())\n",
        # What a dask user writes for a local cluster of {workers} single-threaded workers.
        "import time\n"
        "from distributed import Client, LocalCluster\n"
        + _MAIN
        + "    cluster = LocalCluster(n_workers={workers}, threads_per_worker=1)\n"
        "    client = Client(cluster)\n"
        "    client.submit(int, pure=False).result()\n"
        "    client.close(); cluster.close()\n"
        "    print(time.monotonic())\n",
    ),
}

#: What each backend needs beyond the core (a backend that is not installed is skipped).
NEEDS = {"asyncio": "anyio", "loky": "anyexec_loky", "dask": "anyexec_dask"}


def make_distributions(folder: Path, count: int) -> None:
    """``count`` installed-looking distributions (metadata only) in ``folder``."""
    for i in range(count):
        name = f"dummy-dist-{i:03d}"
        info = folder / f"{name.replace('-', '_')}-1.0.{i}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0.{i}\nSummary: start-up bench\n"
        )
        (info / "entry_points.txt").write_text(
            f"[console_scripts]\n{name} = dummy_{i}:main\n\n"
            f"[some.plugins]\nplugin_{i} = dummy_{i}.plugin:Plugin\n"
        )
        (info / "RECORD").write_text("")
        (info / "INSTALLER").write_text("bench\n")


#: The targets: anyexec's time to close within this multiple of the raw pool's.
TARGETS = {"thread": 2.0, "process": 2.0, "asyncio": 2.0, "loky": 1.2, "dask": 1.2}


def sample(code: str, env: dict[str, str], cwd: str) -> tuple[float, float]:
    """(interpreter start to after close, interpreter start to exit), in seconds."""
    start = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    whole = time.monotonic() - start
    if out.returncode != 0:
        raise RuntimeError(f"sample failed:\n{code}\n{out.stderr}")
    closed = float(out.stdout.strip().splitlines()[-1])
    return closed - start, whole


def _versions() -> str:
    from importlib import metadata

    found = []
    for dist in ("anyexec", "anyio", "loky", "distributed"):
        try:
            found.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            pass
    return ", ".join(found)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="samples per case (median)")
    parser.add_argument(
        "--dists", type=int, default=300, help="extra distributions (0: only the environment as is)"
    )
    parser.add_argument(
        "--backends",
        default=",".join(CASES),
        help=f"comma-separated, from {','.join(CASES)} (default: every one installed)",
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--compare",
        metavar="SRC",
        help="also time the anyexec found first on PYTHONPATH=SRC (another checkout's src/), "
        "interleaved with the others",
    )
    args = parser.parse_args(argv)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    for b in backends:
        if b not in CASES:
            parser.error(f"unknown backend {b!r}; choose from {', '.join(CASES)}")
    missing = [b for b in backends if b in NEEDS and importlib.util.find_spec(NEEDS[b]) is None]
    if missing:
        print(f"skipped (not installed): {', '.join(missing)}")
        backends = [b for b in backends if b not in missing]

    # As an installed package runs: bytecode caches written (by the warm-up run) and used.
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ANYEXEC_") and k != "PYTHONDONTWRITEBYTECODE"
    }
    with tempfile.TemporaryDirectory(prefix="anyexec-startup-") as tmp:
        extra = Path(tmp) / "site"
        extra.mkdir()
        work = Path(tmp) / "work"  # the samples' working directory: no config file
        work.mkdir()
        make_distributions(extra, args.dists)
        envs = {}
        layouts = [("as is", [])] + ([(f"+{args.dists} dists", [str(extra)])] if args.dists else [])
        for label, paths in layouts:
            env = dict(base)
            path = paths + ([base["PYTHONPATH"]] if base.get("PYTHONPATH") else [])
            if path:
                env["PYTHONPATH"] = os.pathsep.join(path)
            envs[label] = env
        count_code = "import importlib.metadata as m; print(len(list(m.distributions())))"
        counts = {
            label: subprocess.run(
                [sys.executable, "-c", count_code], env=env, capture_output=True, text=True
            ).stdout.strip()
            for label, env in envs.items()
        }
        times: dict[tuple[str, str, str], list[tuple[float, float]]] = {}
        for run in range(-1, args.runs):  # run -1: warm-up (caches), not counted
            for label, env in envs.items():
                for b in backends:
                    mine, raw = CASES[b]
                    variants = [("anyexec", mine, env), ("raw", raw, env)]
                    if args.compare:
                        other = dict(env)
                        other["PYTHONPATH"] = os.pathsep.join(
                            filter(None, [args.compare, env.get("PYTHONPATH")])
                        )
                        variants.append(("compare", mine, other))
                    for who, code, use in variants:
                        took = sample(code.format(workers=args.workers), use, str(work))
                        if run >= 0:
                            times.setdefault((label, b, who), []).append(took)

    print(
        f"python {sys.version.split()[0]} ({platform.machine()}, {os.cpu_count()} CPUs), "
        f"{_versions()}; {args.runs} runs each (median), workers={args.workers}"
    )
    print(
        "to close: interpreter start, imports, first Executor(), first result, close\n"
        "whole:    the same and the interpreter's exit"
    )
    head = (
        f"{'environment':<24}{'backend':<9}{'what':<10}{'anyexec s':>11}{'raw s':>10}"
        f"{'ratio':>8}{'target':>8}{'':7}"
    )
    print(head + (f"{'compared s':>12}{'ratio':>8}" if args.compare else ""))
    for label in envs:
        shown = f"{label} ({counts[label]} dists)"
        for b in backends:
            for i, what in enumerate(("to close", "whole")):

                def med(who: str, i: int = i) -> float:
                    return statistics.median(t[i] for t in times[(label, b, who)])

                t_any, t_raw = med("anyexec"), med("raw")
                ratio = t_any / t_raw
                line = f"{shown:<24}{b:<9}{what:<10}{t_any:>11.4f}{t_raw:>10.4f}{ratio:>7.2f}×"
                if i == 0:
                    target = TARGETS[b]
                    verdict = "met" if ratio <= target else "missed"
                    line += f"{f'≤ {target:.1f}×':>8} {verdict:<6}"
                else:
                    line += " " * 15
                if args.compare:
                    t_other = med("compare")
                    line += f"{t_other:>12.4f}{t_other / t_raw:>7.2f}×"
                print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
