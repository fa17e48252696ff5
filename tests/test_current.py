"""``require=`` and ``prefer=`` on ``anyexec.map``/``amap``/``submit``/``current``/``using``,
against each configuration layer, on every backend."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from installed import installed

import anyexec
from anyexec import cli, config
from anyexec._worker import context as _context

LOKY = pytest.param(
    "loky",
    marks=pytest.mark.skipif(not installed("anyexec_loky"), reason="anyexec-loky not installed"),
)
DASK = pytest.param(
    "dask",
    marks=pytest.mark.skipif(not installed("anyexec_dask"), reason="anyexec-dask not installed"),
)
CROSSING = ["process", LOKY, DASK]  # run tasks in other processes or a cluster
SHARING = ["serial", "thread", "asyncio"]  # share the caller's memory


def write(path: Path, text: str) -> None:
    path.write_text(text)
    config.clear_cache()


@pytest.fixture
def info_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.INFO, logger="anyexec")
    yield caplog


def sharedmem_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "anyexec" and r.levelno == logging.INFO and "sharedmem" in r.getMessage()
    ]


# -- require="sharedmem" ------------------------------------------------------------------


@pytest.mark.parametrize("name", CROSSING)
def test_sharedmem_replaces_a_crossing_backend_from_the_environment(
    name: str, monkeypatch: pytest.MonkeyPatch, info_log: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("ANYEXEC_BACKEND", name)
    monkeypatch.setenv("ANYEXEC_WORKERS", "2")
    s = config.resolve(require="sharedmem")
    assert (s.name, s.workers) == ("thread", 2)
    assert "require='sharedmem'" in s.sources["backend"] and name in s.sources["backend"]
    lines = sharedmem_lines(info_log)
    assert len(lines) == 1
    assert f"instead of {name!r}" in lines[0].getMessage()


@pytest.mark.parametrize("name", SHARING)
def test_sharedmem_keeps_a_backend_that_shares_memory(
    name: str, monkeypatch: pytest.MonkeyPatch, info_log: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("ANYEXEC_BACKEND", name)
    assert config.resolve(require="sharedmem").name == name
    with anyexec.using(name):
        assert config.resolve(require="sharedmem").name == name
    assert sharedmem_lines(info_log) == []


def test_sharedmem_against_each_layer(info_log: pytest.LogCaptureFixture) -> None:
    write(
        Path("anyexec.toml"), 'backend = "process"\nworkers = 3\n[process]\nmp_context = "spawn"\n'
    )
    s = config.resolve(require="sharedmem")
    assert (s.name, s.workers, dict(s.options)) == ("thread", 3, {})  # process's table dropped
    with anyexec.using("process", workers=2):
        assert (config.resolve(require="sharedmem").name, config.resolve().name) == (
            "thread",
            "process",
        )
        with anyexec.using(require="sharedmem") as ex:  # an inner block requires it
            assert ex.backend == "thread" and ex.workers == 2
            assert config.resolve().name == "thread"
    assert len(sharedmem_lines(info_log)) == 4  # one per resolution that replaced


def test_sharedmem_with_a_backend_in_the_same_call_is_an_error() -> None:
    with pytest.raises(
        anyexec.ConfigError, match=r"argument: backend 'process'.*require='sharedmem'"
    ):
        config.resolve("process", require="sharedmem")
    with pytest.raises(anyexec.ConfigError, match=r"using\(backend='process'.*the same call"):
        with anyexec.using("process", require="sharedmem"):
            pass  # pragma: no cover
    with anyexec.using("thread", require="sharedmem") as ex:  # no conflict
        assert ex.backend == "thread"


def test_closure_runs_under_sharedmem_on_a_process_backend(
    monkeypatch: pytest.MonkeyPatch, info_log: pytest.LogCaptureFixture
) -> None:
    """The library's closure cannot be pickled; require='sharedmem' keeps it working."""
    monkeypatch.setenv("ANYEXEC_BACKEND", "process")
    seen: list[int] = []  # shared memory: the tasks append to the caller's list
    k = 3

    def task(x: int) -> int:
        seen.append(x)
        return x * k

    assert list(anyexec.map(task, range(5), require="sharedmem")) == [0, 3, 6, 9, 12]
    assert anyexec.submit(task, 4, require="sharedmem").result(timeout=60) == 12
    assert anyexec.current(require="sharedmem").backend == "thread"

    async def collect() -> list[int]:
        return [r async for r in anyexec.amap(task, range(3), require="sharedmem")]

    assert asyncio.run(collect()) == [0, 3, 6]
    assert sorted(seen) == [0, 0, 1, 1, 2, 2, 3, 4, 4]
    assert len(sharedmem_lines(info_log)) == 4


def test_sharedmem_inside_a_worker_keeps_serial() -> None:
    token = _context.IN_WORKER.set(True)
    try:
        assert config.resolve(require="sharedmem", prefer="processes").name == "serial"
    finally:
        _context.IN_WORKER.reset(token)


# -- prefer= --------------------------------------------------------------------------------


@pytest.mark.parametrize(("prefer", "name"), [("threads", "thread"), ("processes", "process")])
def test_prefer_picks_only_when_no_layer_chose(
    prefer: str, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = config.resolve(prefer=prefer)
    assert s.name == name and f"prefer={prefer!r}" in s.sources["backend"]
    assert config.resolve("serial", prefer=prefer).name == "serial"  # argument
    with anyexec.using("asyncio"):
        assert config.resolve(prefer=prefer).name == "asyncio"  # using()
    with anyexec.using(prefer=prefer) as ex:  # using(prefer=) is a hint too
        assert ex.backend == name
        assert config.resolve(prefer="threads").name == "thread"  # the innermost hint
    monkeypatch.setenv("ANYEXEC_BACKEND", "serial")
    assert config.resolve(prefer=prefer).name == "serial"  # environment
    monkeypatch.delenv("ANYEXEC_BACKEND")
    write(Path("anyexec.toml"), 'backend = "asyncio"\n')
    assert config.resolve(prefer=prefer).name == "asyncio"  # config file
    write(Path("anyexec.toml"), "workers = 1\n")  # a file that picks no backend
    assert config.resolve(prefer=prefer).name == name


def test_prefer_processes_gives_way_to_sharedmem(info_log: pytest.LogCaptureFixture) -> None:
    assert config.resolve(prefer="processes", require="sharedmem").name == "thread"
    assert sharedmem_lines(info_log) == []  # nothing was replaced: the hint just did not apply


def test_prefer_inside_a_worker_keeps_serial() -> None:
    token = _context.IN_WORKER.set(True)
    try:
        assert config.resolve(prefer="processes").name == "serial"
    finally:
        _context.IN_WORKER.reset(token)


# -- bad values and the CLI -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "valid"),
    [
        ({"require": "sharedmemory"}, "'sharedmem'"),
        ({"prefer": "thread"}, "'threads', 'processes'"),
    ],
)
def test_unknown_require_or_prefer_lists_the_valid_values(
    kwargs: dict[str, str], valid: str
) -> None:
    with pytest.raises(anyexec.ConfigError, match=valid):
        anyexec.current(**kwargs)
    with pytest.raises(anyexec.ConfigError, match=valid):
        list(anyexec.map(abs, [1], **kwargs))
    with pytest.raises(anyexec.ConfigError, match=valid):
        anyexec.submit(abs, 1, **kwargs)
    with pytest.raises(anyexec.ConfigError, match=valid):
        with anyexec.using(**kwargs):  # type: ignore[arg-type]
            pass  # pragma: no cover


def test_cli_config_shows_the_outcome(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ANYEXEC_BACKEND", "process")
    assert cli.main(["config", "--require", "sharedmem", "--prefer", "processes"]) == 0
    out = capsys.readouterr().out
    assert "require='sharedmem'" in out and "backend: thread" in out
    monkeypatch.delenv("ANYEXEC_BACKEND")
    assert cli.main(["config", "--prefer", "processes"]) == 0
    assert "backend: process" in capsys.readouterr().out
    assert cli.main(["config", "--require", "nope"]) == 2
    assert "'sharedmem'" in capsys.readouterr().err


# -- docs/library-use.md runs as printed ----------------------------------------------------


@pytest.mark.slow
def test_the_documented_library_and_application_run(tmp_path: Path) -> None:
    import os
    import re
    import subprocess
    import sys

    doc = (Path(__file__).parent.parent / "docs" / "library-use.md").read_text()
    blocks = dict(re.findall(r"```python\n# (\w+\.py)(.*?)```", doc, re.S))
    assert set(blocks) == {"wordstats.py", "app.py"}, "the example is missing"
    assert sum(len(code.splitlines()) for code in blocks.values()) <= 26  # "20 lines"
    for name, code in blocks.items():
        (tmp_path / name).write_text(f"# {name}{code}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANYEXEC_")}
    env["PYTHONPATH"] = str(tmp_path)
    run = subprocess.run(
        [sys.executable, "app.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ["[2, 3]", "['doc:x', 'doc:y']"]
