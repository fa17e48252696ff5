"""The ``anyexec`` command: ``backends``, ``config``, ``bench``, ``tune`` and ``--version``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from anyexec import config, registry
from anyexec.errors import AnyexecError

__all__ = ["console_main", "main"]


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
    s = config.resolve(require=args.require, prefer=args.prefer)
    if args.require or args.prefer:
        asked = ", ".join(
            f"{k}={v!r}" for k, v in (("require", args.require), ("prefer", args.prefer)) if v
        )
        print(f"for a call with {asked}:")
    print(f"backend: {s.name}   ({s.sources['backend']})")
    print(f"workers: {s.workers}   ({s.sources['workers']})")
    if "allow_oversubscribe" in s.sources:
        print(
            f"allow_oversubscribe: {s.allow_oversubscribe}   ({s.sources['allow_oversubscribe']})"
        )
    for key, value in sorted(s.options.items()):
        print(f"option {key}: {value!r}   ({s.sources['option ' + key]})")
    print(f"config file: {s.config_file or 'none found'}")
    if s.config_file is not None:
        print(f"project root: {config.project_root()}")
    for note in s.notes:
        print(f"note: {note}")
    cluster = getattr(s.backend, "describe_cluster", None)  # backends over a cluster (dask)
    if cluster is not None:
        print(f"cluster: {cluster(s.options)}")
    return 0


def _version_text() -> str:
    """What ``anyexec --version`` prints: anyexec's version, then every distribution that
    registers backends, with its version and the backends it provides. Reads entry points
    only: no backend is imported."""
    import platform

    from anyexec import __version__

    by_dist: dict[tuple[str, str], list[str]] = {}
    for name, ep in registry._REGISTRY.entry_points().items():
        by_dist.setdefault(registry._dist_of(ep), []).append(name)
    lines = [f"anyexec {__version__} (Python {platform.python_version()})"]
    for (dist, version), names in sorted(by_dist.items()):
        lines.append(f"  {dist} {version}: {', '.join(sorted(names))}")
    return "\n".join(lines)


class _VersionAction(argparse.Action):
    """``--version``, computed when asked for (argparse's own takes a fixed string)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help="show versions and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        print(_version_text())
        parser.exit()


def _working_directory_on_path() -> None:
    """Let ``bench --workload module:function`` find the module in the working directory,
    as under ``python -m anyexec``: a console script's sys.path starts with the script's
    own folder, not the working directory. PYTHONPATH carries it to the worker processes
    started afterwards (spawn, forkserver, loky, dask), which import the task's module by
    name. Only the console script calls this, never :func:`main`, so a program that calls
    ``main`` keeps its own sys.path and environment."""
    cwd = os.getcwd()
    if "" in sys.path or cwd in sys.path:
        return
    sys.path.insert(0, cwd)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [cwd, *([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])]
    )


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
    plot, plot_note = _plot_path(args)
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
    print(result.report())
    print()
    if args.json is not None:
        bench.write_json(result, args.json)
        print(f"wrote {args.json}")
    if args.csv is not None:
        args.csv.write_text(result.csv())
        print(f"wrote {args.csv}")
    if plot is not None and result.measurements:
        result.plot(plot)
        print(f"wrote {plot} (speedup against workers)")
    elif plot_note:
        print(plot_note)
    return 1 if result.errors else 0


def _plot_path(args: argparse.Namespace) -> tuple[Path | None, str | None]:
    """Where to draw the speedup plot, or None and why not. ``--plot PATH`` needs
    matplotlib; without ``--plot`` the plot goes to bench.DEFAULT_PLOT when matplotlib is
    installed, and ``--no-plot`` turns it off."""
    from anyexec import bench

    try:
        import matplotlib  # noqa: F401
    except ImportError:
        if args.plot is not None:
            raise AnyexecError(
                "--plot needs matplotlib. Install it with: pip install 'anyexec[plot]'"
            ) from None
        if args.no_plot:
            return None, None
        return None, "no plot: matplotlib is not installed (pip install 'anyexec[plot]')"
    if args.no_plot:
        return None, None
    if args.plot is not None:
        return args.plot, None
    path = Path(bench.DEFAULT_PLOT)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        bench.check_writable(path, "the plot")
    except (OSError, AnyexecError) as exc:
        return None, f"no plot: cannot write {path} ({exc}); choose a path with --plot"
    return path, None


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
    parser.add_argument("--version", action=_VersionAction)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("backends", help="list installed backends and whether each loads")
    c = sub.add_parser("config", help="show the resolved backend and where each value came from")
    c.add_argument(
        "--require",
        help="what a call's tasks require: sharedmem (shows the backend such a call gets)",
    )
    c.add_argument(
        "--prefer", help="a call's soft hint: threads or processes (shows what it picks)"
    )
    _tune_parser(sub)
    b = sub.add_parser("bench", help="measure speedup: backends × workers × workloads")
    b.add_argument(
        "--backend",
        "-b",
        help="comma-separated backends (default: every installed one but serial, the baseline)",
    )
    b.add_argument("--workers", "-p", help="comma-separated worker counts (default: 1,CPUs)")
    b.add_argument(
        "--workload",
        "-w",
        help="comma-separated: cpu, numpy, io, tiny, async or module:function, "
        "found from the working directory (default: cpu,io,tiny)",
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
    b.add_argument(
        "--plot",
        type=Path,
        help="draw speedup against workers (PNG; default with matplotlib installed: "
        "bench-results/speedup.png)",
    )
    b.add_argument("--no-plot", action="store_true", help="draw no plot")
    b.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    return parser


def _tune_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """``anyexec tune``: its arguments; the work is :func:`anyexec.tune.run_cli`."""
    t = sub.add_parser("tune", help="find the fastest backend, workers and chunk size for fn")
    t.add_argument("target", metavar="MODULE:FUNCTION", help="the function to tune")
    t.add_argument("--inputs", help="a count N (inputs 0..N-1) or a JSON file holding a list")
    t.add_argument("--budget", type=float, default=60.0, help="wall seconds to spend (60)")
    t.add_argument("--backend", "-b", help="comma-separated backends (default: every installed)")
    t.add_argument("--workers", "-p", help="comma-separated worker counts (default: searched)")
    t.add_argument("--chunksize", help="comma-separated chunk sizes or auto (default: searched)")
    t.add_argument("--write", metavar="PROFILE", help="write the result as this config profile")
    t.add_argument("--json", type=Path, help="write everything measured as JSON")
    t.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


def _cmd_tune(args: argparse.Namespace) -> int:
    from anyexec.tune import run_cli

    return run_cli(args)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if getattr(args, "size", None) is not None and float(args.size).is_integer() and args.size >= 1:
        args.size = int(args.size)
    if getattr(args, "repeat", 1) < 1:
        parser.error("--repeat must be at least 1")
    handlers = {"backends": _cmd_backends, "config": _cmd_config, "bench": _cmd_bench}
    handlers["tune"] = _cmd_tune
    try:
        return handlers[args.command](args)
    except (AnyexecError, ImportError) as exc:
        print(f"anyexec: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("anyexec: interrupted", file=sys.stderr)
        return 130


def console_main() -> int:
    """The ``anyexec`` console script (``[project.scripts]``): :func:`main`, with the
    working directory importable as under ``python -m anyexec``."""
    _working_directory_on_path()
    return main()


if __name__ == "__main__":
    sys.exit(main())
