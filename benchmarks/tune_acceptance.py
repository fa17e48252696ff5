"""`anyexec tune` on the four reference workloads, several runs each, checked against what
it should recommend on a 2-core machine (docs/tuning.md, "How well it decides").

Each run is the documented command, `anyexec tune benchmarks.tasks:FUNCTION --inputs N
--budget B --json ...`, in a fresh interpreter, so nothing one run started can help or
hinder the next. The workloads and what counts as right:

- ``sleep10ms`` × 64 (waiting): thread or asyncio, with more workers than CPUs;
- ``cpu20ms`` × 64 (pure Python): process or loky, at 2 workers;
- ``noop`` × 10,000: serial;
- ``matmul`` × 64 (numpy on one BLAS thread, releases the GIL): the best thread candidate's
  speedup within 10% of the best candidate's.

Usage::

    python benchmarks/tune_acceptance.py --runs 3 --budget 60 --out build/tune_acceptance.md
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
Check = Callable[[dict[str, Any]], tuple[bool, str]]


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _sleeps(doc: dict[str, Any]) -> tuple[bool, str]:
    rec = doc["recommendation"]
    ok = rec["backend"] in ("thread", "asyncio") and rec["workers"] > _cpus()
    return ok, "thread or asyncio with workers > CPUs"


def _cpu(doc: dict[str, Any]) -> tuple[bool, str]:
    rec = doc["recommendation"]
    return rec["backend"] in ("process", "loky") and rec["workers"] == 2, "process or loky × 2"


def _noop(doc: dict[str, Any]) -> tuple[bool, str]:
    return doc["recommendation"]["backend"] == "serial", "serial"


def _numpy(doc: dict[str, Any]) -> tuple[bool, str]:
    valid = [
        c
        for c in doc["candidates"]
        if c["status"] in ("screened", "re-measured") and c["speedup"] is not None
    ]
    best = max((c["speedup"] for c in valid), default=0.0)
    thread = max((c["speedup"] for c in valid if c["backend"] == "thread"), default=0.0)
    ratio = thread / best if best else 0.0
    return ratio >= 0.9, f"thread within 10% of the best (thread/best = {ratio:.2f})"


WORKLOADS: dict[str, tuple[int, Check]] = {
    "sleep10ms": (64, _sleeps),
    "cpu20ms": (64, _cpu),
    "noop": (10_000, _noop),
    "matmul": (64, _numpy),
}


def run_once(name: str, inputs: int, budget: float, scratch: Path) -> tuple[dict[str, Any], float]:
    out = scratch / f"{name}-{time.monotonic_ns()}.json"
    cmd = [
        sys.executable, "-m", "anyexec", "tune", f"benchmarks.tasks:{name}",
        "--inputs", str(inputs), "--budget", str(budget), "--quiet", "--json", str(out),
    ]  # fmt: skip
    start = time.monotonic()
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, timeout=budget * 3)
    wall = time.monotonic() - start
    return json.loads(out.read_text()), wall


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--budget", type=float, default=60.0)
    ap.add_argument("--only", default=",".join(WORKLOADS), help="comma-separated workloads")
    ap.add_argument("--out", type=Path, help="also write the table (markdown) here")
    ap.add_argument("--keep", type=Path, help="keep each run's --json output in this folder")
    args = ap.parse_args()
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = sorted(set(names) - set(WORKLOADS))
    if unknown:
        ap.error(f"--only: unknown workload(s) {unknown}; known: {', '.join(WORKLOADS)}")
    lines = [
        f"`python benchmarks/tune_acceptance.py --runs {args.runs} --budget {args.budget:g}`, "
        f"{time.strftime('%Y-%m-%d')}, {_cpus()} CPUs, load {os.getloadavg()[0]:.1f} at start",
        "",
        "| workload | run | recommendation | S | wall s | expected | ok |",
        "|---|---:|---|---:|---:|---|---|",
    ]
    held = {n: 0 for n in names}
    with tempfile.TemporaryDirectory() as tmp:
        scratch = args.keep or Path(tmp)
        scratch.mkdir(parents=True, exist_ok=True)
        for run in range(1, args.runs + 1):
            for name in names:  # workloads interleaved, so a busy spell hits several
                inputs, check = WORKLOADS[name]
                doc, wall = run_once(name, inputs, args.budget, scratch)
                ok, expected = check(doc)
                held[name] += ok
                rec = doc["recommendation"]
                line = (
                    f"| {name} × {inputs} | {run} | {rec['backend']} × {rec['workers']}, "
                    f"chunksize {rec['chunksize']} | {rec['speedup']:.2f} | {wall:.1f} | "
                    f"{expected} | {'yes' if ok else 'NO'} |"
                )
                lines.append(line)
                print(line, flush=True)
                if not ok:
                    print(f"    verdict: {doc['verdict']}", flush=True)
    lines += ["", "Held: " + ", ".join(f"{n} {held[n]}/{args.runs}" for n in names)]
    print(lines[-1])
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines) + "\n")
    return 0 if all(v == args.runs for v in held.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
