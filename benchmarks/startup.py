"""Start-up cost: the first ``Executor()`` + first result + close, in a fresh interpreter,
against the raw pool, in the environment as it is and with 300 more installed distributions.

Usage::

    python benchmarks/startup.py                 # thread and process, 10 runs each
    python benchmarks/startup.py --runs 20 --dists 300 --backends thread,process
    python benchmarks/startup.py --compare /path/to/other/checkout/src   # and another version

Each sample is one new interpreter that times, from after ``import`` to after
``shutdown()``, one cycle of: create the executor, submit ``int()``, wait for the result,
close ("cycle"), and the whole process from outside ("whole": interpreter start, imports,
cycle, exit), with bytecode caches in place as in an installed package (one warm-up run per case
writes them, and is not counted). The cycles of every case are interleaved (run 1 of each case, then run 2, ...), so
a noisy machine disturbs every case alike; the median of the runs is reported, with the
ratio to the raw pool measured in the same loop.

"300 more distributions" are real distribution metadata: a folder of 300 ``*.dist-info``
directories (``METADATA`` and an ``entry_points.txt`` with console scripts and a plugin
group, as ordinary packages have) put on ``PYTHONPATH``. ``importlib.metadata`` reads them
exactly as it reads ``site-packages``, so a scan of every distribution's entry points pays
for each one, as it would in a large virtual environment.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = {
    "thread": (
        "import anyexec, time\n"
        "t = time.perf_counter()\n"
        "ex = anyexec.Executor('thread', workers={workers})\n"
        "ex.submit(int).result(); ex.shutdown()\n"
        "print(time.perf_counter() - t)\n",
        "import concurrent.futures as cf, time\n"
        "t = time.perf_counter()\n"
        "ex = cf.ThreadPoolExecutor({workers})\n"
        "ex.submit(int).result(); ex.shutdown()\n"
        "print(time.perf_counter() - t)\n",
    ),
    "process": (
        "import anyexec, time\n"
        "if __name__ == '__main__':\n"
        "    t = time.perf_counter()\n"
        "    ex = anyexec.Executor('process', workers={workers})\n"
        "    ex.submit(int).result(); ex.shutdown()\n"
        "    print(time.perf_counter() - t)\n",
        "import concurrent.futures as cf, multiprocessing as mp, time\n"
        "if __name__ == '__main__':\n"
        "    t = time.perf_counter()\n"
        "    ex = cf.ProcessPoolExecutor({workers}, mp_context=mp.get_context('forkserver'))\n"
        "    ex.submit(int).result(); ex.shutdown()\n"
        "    print(time.perf_counter() - t)\n",
    ),
}


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


def sample(code: str, env: dict[str, str]) -> tuple[float, float]:
    """(the cycle as timed inside the interpreter, the whole process as timed outside)."""
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    whole = time.perf_counter() - start
    if out.returncode != 0:
        raise RuntimeError(f"sample failed:\n{code}\n{out.stderr}")
    return float(out.stdout.strip().splitlines()[-1]), whole


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="samples per case (median)")
    parser.add_argument("--dists", type=int, default=300, help="extra distributions")
    parser.add_argument("--backends", default="thread,process", help=",".join(CASES))
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

    # As an installed package runs: bytecode caches written (by the warm-up run) and used.
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ANYEXEC_") and k != "PYTHONDONTWRITEBYTECODE"
    }
    with tempfile.TemporaryDirectory(prefix="anyexec-startup-") as tmp:
        extra = Path(tmp) / "site"
        extra.mkdir()
        make_distributions(extra, args.dists)
        envs = {}
        for label, paths in (("as is", []), (f"+{args.dists} dists", [str(extra)])):
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
                        took = sample(code.format(workers=args.workers), use)
                        if run >= 0:
                            times.setdefault((label, b, who), []).append(took)

    print(
        f"python {sys.version.split()[0]}, {args.runs} runs each (median), "
        f"workers={args.workers}; create + first result + close in a fresh interpreter"
    )
    print(
        "cycle: timed inside, from after `import anyexec` (lazy) / `import concurrent.futures`"
        "\nwhole: the interpreter's start, imports, cycle and exit, timed outside"
    )
    head = f"{'environment':<24}{'backend':<9}{'what':<7}{'anyexec s':>11}{'raw s':>10}{'ratio':>8}"
    print(head + (f"{'compared s':>12}{'ratio':>8}" if args.compare else ""))
    for label in envs:
        shown = f"{label} ({counts[label]} dists)"
        for b in backends:
            for i, what in enumerate(("cycle", "whole")):

                def med(who: str, i: int = i) -> float:
                    return statistics.median(t[i] for t in times[(label, b, who)])

                t_any, t_raw = med("anyexec"), med("raw")
                line = f"{shown:<24}{b:<9}{what:<7}{t_any:>11.4f}{t_raw:>10.4f}"
                line += f"{t_any / t_raw:>7.2f}×"
                if args.compare:
                    t_other = med("compare")
                    line += f"{t_other:>12.4f}{t_other / t_raw:>7.2f}×"
                print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
