"""The anyexec command, run as users run it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from anyexec import bench, cli
from anyexec.measure import Measurement


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "anyexec", *args], capture_output=True, text=True, timeout=300
    )


def console_script() -> str:
    """The ``anyexec`` console script installed beside this interpreter (what users run)."""
    found = shutil.which("anyexec", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip("the anyexec console script is not installed beside this Python")
    return found


def test_version_names_anyexec_and_every_backend_distribution() -> None:
    from importlib import metadata

    import anyexec

    out = run("--version")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith(f"anyexec {anyexec.__version__} (Python ")
    assert f"  anyexec {metadata.version('anyexec')}: asyncio, process, serial, thread" in lines
    for name in ("loky", "dask"):
        try:
            version = metadata.version(f"anyexec-{name}")
        except metadata.PackageNotFoundError:
            continue
        assert f"  anyexec-{name} {version}: {name}" in lines


def test_backends_table() -> None:
    out = run("backends")
    assert out.returncode == 0, out.stderr
    for name in ("serial", "thread", "process", "asyncio"):
        assert name in out.stdout


def test_config_shows_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    Path("pyproject.toml").write_text('[tool.anyexec]\nbackend = "process"\n')
    monkeypatch.setenv("ANYEXEC_WORKERS", "3")
    out = run("config")
    assert out.returncode == 0, out.stderr
    assert "backend: process" in out.stdout and "[tool.anyexec]" in out.stdout
    assert "workers: 3" in out.stdout and "ANYEXEC_WORKERS" in out.stdout


def test_config_bad_environment_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANYEXEC_WORKERS", "abc")
    out = run("config")
    assert out.returncode == 2
    assert "ANYEXEC_WORKERS='abc'" in out.stderr and "Traceback" not in out.stderr


def test_bench_io_json_on_every_installed_backend(tmp_path: Path) -> None:
    path = tmp_path / "bench.json"
    out = run(
        "bench",
        "--workload",
        "io",
        "--workers",
        "1,4",
        "--repeat",
        "2",
        "--tasks",
        "24",
        "--size",
        "0.05",
        "--json",
        str(path),
        "--csv",
        str(tmp_path / "b.csv"),
        "-q",
    )
    assert out.returncode == 0, out.stderr + out.stdout
    data = json.loads(path.read_text())
    assert data["schema"] == "anyexec.bench/1"
    assert data["machine"]["cores"] >= 1 and "python" in data["machine"]
    rows = {(r["backend"], r["workers"]): r for r in data["results"]}
    from anyexec import backends

    for info in backends():
        if info.available and info.name != "serial":
            r = rows[(info.name, 4)]
            assert r["results_match"]
            assert r["summary"]["speedup"] > 1.5, r  # ideal 4: 24 sleeps of 50 ms
    assert "speedup" in (tmp_path / "b.csv").read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workload", "nope"], "unknown workload 'nope'"),
        (["--workers", "1,x"], "'x' is not a positive integer"),
        (["--workers", "0"], "'0' is not a positive integer"),
        (["--json", "/nonexistent/dir/out.json"], "does not exist"),
        (["--backend", "nope"], "unknown backend 'nope'"),
        (["--workload", "os:nope", "--inputs", "3"], "cannot be imported"),
    ],
)
def test_bench_bad_input(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["bench", "-q", *args]) == 2
    assert message in capsys.readouterr().err


def test_bench_unwritable_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("")
    assert cli.main(["bench", "-q", "--json", str(a_file / "x.json")]) == 2
    assert "not writable" in capsys.readouterr().err
    assert cli.main(["bench", "-q", "--csv", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err


def test_bench_user_function(tmp_path: Path) -> None:
    out = run(
        "bench",
        "--workload",
        "anyexec.testing.tasks:square",
        "--inputs",
        "50",
        "--backend",
        "thread",
        "--workers",
        "2",
        "--repeat",
        "1",
        "-q",
    )
    assert out.returncode == 0, out.stderr
    assert "anyexec.testing.tasks:square" in out.stdout


def test_bench_finds_workloads_in_the_working_directory() -> None:
    """The console script, like ``python -m anyexec``, imports module:function from the
    working directory, and so do process workers."""
    Path("mypkg").mkdir()
    Path("mypkg/__init__.py").write_text("")
    Path("mypkg/tasks.py").write_text("def score(x):\n    return x * 3\n")
    out = subprocess.run(
        [
            *(console_script(), "bench", "--workload", "mypkg.tasks:score", "--inputs", "20"),
            *("--backend", "thread,process", "--workers", "2", "--repeat", "1", "-q", "--no-plot"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr + out.stdout
    assert "mypkg.tasks:score: 20 tasks" in out.stdout
    assert "FAILED" not in out.stdout


def test_bench_explains_itself_and_draws_the_plot() -> None:
    """The table is followed by a legend, one verdict per workload, what the run shows, and
    the path of the plot it drew by default."""
    pytest.importorskip("matplotlib")
    out = run(
        "bench",
        "--workload",
        "io,tiny",
        "--backend",
        "thread,process",
        "--workers",
        "1,2",
        "--tasks",
        "16",
        "--repeat",
        "2",
        "-q",
    )
    assert out.returncode == 0, out.stderr + out.stdout
    text = out.stdout
    assert "Legend" in text and "< noise" in bench.LEGEND and "Ts " in text
    verdicts = text.split("Verdicts\n", 1)[1].splitlines()
    assert verdicts[0].startswith("  io: ") and verdicts[1].startswith("  tiny: ")
    assert "ran on 2 backends (process, thread), chosen by configuration only" in text
    assert "wrote bench-results/speedup.png" in text
    assert Path("bench-results/speedup.png").stat().st_size > 0
    assert "serial  " not in text  # the baseline is not a row of its own
    assert "-" not in "".join(  # no negative overheads
        line.split()[7] for line in text.splitlines() if line.startswith(("  thread", "  process"))
    )


def test_bench_no_plot() -> None:
    out = run(
        "bench", "-w", "io", "-b", "thread", "-p", "2", "-n", "4", "-r", "1", "-q", "--no-plot"
    )
    assert out.returncode == 0, out.stderr
    assert "wrote" not in out.stdout and not Path("bench-results").exists()


def fake(backend: str, p: int, ts: float, tp: float, tasks: int = 64) -> Measurement:
    return Measurement(backend, p, "w", tasks, [ts] * 3, [tp * 0.99, tp, tp * 1.01], 0.1)


def verdict(*rows: Measurement) -> str:
    return bench.BenchResult(measurements=list(rows), machine={}).verdicts()[0]


def test_verdict_names_the_fastest_backend() -> None:
    line = verdict(fake("thread", 2, 1.0, 1.0), fake("process", 2, 1.0, 1 / 1.70))
    assert line == "w: process is fastest, S 1.70 on 2 workers (E 0.85)"


def test_verdict_says_stay_serial_when_overhead_exceeds_the_work() -> None:
    line = verdict(fake("thread", 2, 0.005, 0.010, 20_000), fake("process", 2, 0.005, 0.02, 20_000))
    assert line.startswith("w: stay serial, overhead exceeds the work (")


def test_verdict_says_stay_serial_when_nothing_gains() -> None:
    line = verdict(fake("thread", 2, 1.0, 1.0), fake("thread", 1, 1.0, 0.98))
    assert line == (
        "w: stay serial, no backend is clearly faster (best: thread, S 1.02; a gain must reach 1.1)"
    )


def test_verdict_needs_the_gain_against_the_faster_serial_runs() -> None:
    """A few slow serial runs raise the median Ts: S 1.25, but only 1.0 against the
    faster quartile, so it is no gain."""
    m = fake("process", 2, 1.0, 0.8)
    m.serial_times = [0.8, 0.8, 0.8, 1.0, 1.0, 1.0, 1.0, 1.3, 1.3]
    assert m.speedup == pytest.approx(1.25)
    assert verdict(m).startswith("w: stay serial, no backend is clearly faster (best: process")


def test_verdict_warns_about_noisy_serial_runs() -> None:
    m = fake("process", 2, 1.0, 0.5)
    m.serial_times = [0.6, 0.8, 1.0, 1.2, 1.4]
    assert "the serial runs varied by 60%"  # quartiles 0.7 and 1.3 in verdict(m)


def test_overhead_below_the_noise_is_not_printed_as_a_negative_number() -> None:
    report = bench.BenchResult(
        measurements=[fake("process", 2, 1.0, 0.49), fake("thread", 2, 1.0, 1.0)], machine={}
    ).table()
    rows = {line.split()[0]: line.split() for line in report.splitlines()[3:5]}
    assert rows["process"][7:9] == ["<", "noise"]
    assert rows["thread"][7] == "15,625.0"  # (2 x 1.0 - 1.0) / 64 s


def test_one_ts_per_workload_is_shared_by_every_row() -> None:
    from anyexec.workloads import WORKLOADS

    result = bench.run_bench(["thread", "serial"], [1, 2], [WORKLOADS["io"]], repeat=2, tasks=4)
    assert len(result.measurements) == 3  # serial runs at p=1 only
    assert len({m.ts for m in result.measurements}) == 1
    assert all(len(m.serial_times) == 6 for m in result.measurements)


def test_plot_has_integer_worker_ticks(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    seen: list[list[float]] = []
    real = plt.Axes.set_xticks

    def record(self: plt.Axes, ticks: list[float], *a: object, **k: object) -> object:
        seen.append(list(ticks))
        return real(self, ticks, *a, **k)

    result = bench.BenchResult(
        measurements=[fake("process", 1, 1.0, 1.0), fake("process", 4, 1.0, 0.3)], machine={}
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(plt.Axes, "set_xticks", record)
        result.plot(tmp_path / "sub" / "s.png")
    assert seen == [[1, 4]]
    assert (tmp_path / "sub" / "s.png").stat().st_size > 0
