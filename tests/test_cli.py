"""The anyexec command, run as users run it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from anyexec import cli


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "anyexec", *args], capture_output=True, text=True, timeout=300
    )


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
