"""The ``anyexec`` command: ``backends``, ``config`` and ``bench``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from anyexec import config, registry
from anyexec.errors import AnyexecError

__all__ = ["main"]


def _cmd_backends(args: argparse.Namespace) -> int:
    rows = [("name", "available", "crosses", "distribution", "version", "notes")]
    for info in registry.backends():
        rows.append(
            (
                info.name,
                "yes" if info.available else "NO",
                info.crosses or "-",
                info.distribution,
                info.version,
                info.description if info.available else (info.error or ""),
            )
        )
    for name, hint in sorted(registry.KNOWN.items()):
        if name not in registry.names():
            rows.append((name, "not installed", "-", "-", "-", hint))
    widths = [max(len(r[i]) for r in rows[:]) for i in range(5)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r[:5], widths)) + "  " + r[5])
    return 0


def _cmd_config(args: argparse.Namespace) -> int:
    s = config.resolve()
    print(f"backend: {s.name}   ({s.sources['backend']})")
    print(f"workers: {s.workers}   ({s.sources['workers']})")
    for key, value in sorted(s.options.items()):
        print(f"option {key}: {value!r}   ({s.sources['option ' + key]})")
    print(f"config file: {s.config_file or 'none found'}")
    cluster = getattr(s.backend, "describe_cluster", None)  # backends over a cluster (dask)
    if cluster is not None:
        print(f"cluster: {cluster(s.options)}")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from anyexec import bench
    from anyexec.workloads import get_workload

    workers = (
        bench.parse_workers_list(args.workers)
        if args.workers
        else sorted({1, config.available_cpus()})
    )
    names = [w.strip() for w in (args.workload or ",".join(bench.DEFAULT_WORKLOADS)).split(",")]
    workloads = [get_workload(n, args.inputs) for n in names if n]
    backends = (
        [b.strip() for b in args.backend.split(",")] if args.backend else (bench.default_backends())
    )
    for b in backends:
        registry.get(b)  # unknown or unavailable: fail now, with the fix
    for path, flag in ((args.json, "--json"), (args.csv, "--csv"), (args.plot, "--plot")):
        if path is not None:
            bench.check_writable(path, flag)
    if args.plot is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise AnyexecError(
                "--plot needs matplotlib. Install it with: pip install 'anyexec[plot]'"
            ) from None
    steps = sum(
        len({min(p, registry.get(b).max_workers or p) for p in workers}) for b in backends
    ) * len(workloads) + (len(backends) if args.granularity else 0)
    bar = _bar(steps, args.quiet)
    result = bench.run_bench(
        backends,
        workers,
        workloads,
        repeat=args.repeat,
        tasks=args.tasks,
        size=args.size,
        granularity=args.granularity,
        on_step=(lambda what: _step(bar, what)),
    )
    _step(bar, None)
    print(result.table())
    if args.json is not None:
        bench.write_json(result, args.json)
        print(f"wrote {args.json}")
    if args.csv is not None:
        args.csv.write_text(result.csv())
        print(f"wrote {args.csv}")
    if args.plot is not None:
        result.plot(args.plot)
        print(f"wrote {args.plot}")
    return 1 if result.errors else 0


class _Bar:
    def __init__(self, total: int, quiet: bool) -> None:
        self.tqdm = None
        self.quiet = quiet
        if quiet:
            return
        try:
            from tqdm.auto import tqdm

            self.tqdm = tqdm(total=total, unit="run", desc="anyexec bench", file=sys.stderr)
        except ImportError:
            pass
        self.started = False


def _bar(total: int, quiet: bool) -> _Bar:
    return _Bar(total, quiet)


def _step(bar: _Bar, what: str | None) -> None:
    if bar.quiet:
        return
    if bar.tqdm is None:
        if what:
            print(f"... {what}", file=sys.stderr, flush=True)
        return
    if bar.started:
        bar.tqdm.update(1)
    bar.started = True
    if what is None:
        bar.tqdm.close()
    else:
        bar.tqdm.set_postfix_str(what)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="anyexec", description="One map/submit interface over every parallel backend."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("backends", help="list installed backends and whether each loads")
    sub.add_parser("config", help="show the resolved backend and where each value came from")
    b = sub.add_parser("bench", help="measure speedup: backends × workers × workloads")
    b.add_argument("--backend", "-b", help="comma-separated backends (default: every installed)")
    b.add_argument("--workers", "-p", help="comma-separated worker counts (default: 1,CPUs)")
    b.add_argument(
        "--workload",
        "-w",
        help="comma-separated: cpu, numpy, io, tiny, async or module:function "
        "(default: cpu,io,tiny)",
    )
    b.add_argument("--inputs", help="for module:function: a task count or a JSON list file")
    b.add_argument("--tasks", "-n", type=int, help="tasks per run (default: per workload)")
    b.add_argument("--size", type=float, help="task size (see docs/measuring.md)")
    b.add_argument("--repeat", "-r", type=int, default=3, help="timed runs each (median)")
    b.add_argument(
        "--granularity",
        action="store_true",
        help="also sweep the task size per backend and report METG",
    )
    b.add_argument("--json", type=Path, help="write results and machine info as JSON")
    b.add_argument("--csv", type=Path, help="write results as CSV")
    b.add_argument("--plot", type=Path, help="draw speedup against workers (PNG)")
    b.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if getattr(args, "size", None) is not None and float(args.size).is_integer() and args.size >= 1:
        args.size = int(args.size)
    if getattr(args, "repeat", 1) < 1:
        parser.error("--repeat must be at least 1")
    handlers = {"backends": _cmd_backends, "config": _cmd_config, "bench": _cmd_bench}
    try:
        return handlers[args.command](args)
    except (AnyexecError, ImportError) as exc:
        print(f"anyexec: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("anyexec: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
