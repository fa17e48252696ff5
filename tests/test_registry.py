"""Discovery through entry points: fake EntryPoint objects and real installed metadata."""

from __future__ import annotations

import textwrap
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

import anyexec
from anyexec import registry


def _dist(tmp: Path, name: str, entry_points: dict[str, str], module: str, code: str) -> None:
    """Put a real distribution (a .dist-info folder and its module) in ``tmp``."""
    info = tmp / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    lines = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[anyexec.backends]\n{lines}\n")
    (tmp / f"{module}.py").write_text(textwrap.dedent(code))


GOOD = """
    from anyexec.builtin.thread import ThreadBackend

    class ThreeThreads(ThreadBackend):
        '''Exactly three threads, whatever is asked.'''
        max_workers = 3
"""


@pytest.fixture
def plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, refresh_registry: None) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    return site


def test_builtins_register_through_the_entry_point_group() -> None:
    found = {b.name: b for b in anyexec.backends()}
    for name in ("serial", "thread", "process", "asyncio"):
        assert found[name].available and found[name].distribution == "anyexec"
        assert found[name].value.startswith("anyexec.builtin.")


def test_installed_distribution_adds_a_backend(plugins: Path) -> None:
    _dist(plugins, "anyexec-three", {"three": "three_mod:ThreeThreads"}, "three_mod", GOOD)
    registry.refresh()
    info = {b.name: b for b in anyexec.backends()}["three"]
    assert (info.distribution, info.version, info.available) == ("anyexec-three", "1.0", True)
    assert info.description == "Exactly three threads, whatever is asked."
    with anyexec.Executor("three", workers=8) as ex:
        assert ex.workers == 3
        assert list(ex.map(abs, [-1, -2])) == [1, 2]


def test_broken_plugin_warns_and_is_skipped(plugins: Path) -> None:
    _dist(
        plugins,
        "anyexec-broken",
        {"broken": "broken_mod:Nope"},
        "broken_mod",
        "raise ImportError('needs libwarp')\n",
    )
    registry.refresh()
    with pytest.warns(RuntimeWarning, match=r"'broken' from anyexec-broken 1.0 failed to load"):
        infos = {b.name: b for b in anyexec.backends()}
    assert not infos["broken"].available
    assert "needs libwarp" in (infos["broken"].error or "")
    assert infos["thread"].available
    with pytest.raises(anyexec.BackendUnavailable, match=r"'broken'.*cannot load.*needs libwarp"):
        anyexec.Executor("broken")
    with anyexec.Executor("thread", workers=1) as ex:  # the others still work
        assert ex.submit(abs, -1).result() == 1


def test_entry_point_of_the_wrong_type(plugins: Path) -> None:
    _dist(plugins, "anyexec-odd", {"odd": "odd_mod:thing"}, "odd_mod", "thing = 42\n")
    registry.refresh()
    with pytest.warns(RuntimeWarning, match="must name a subclass of anyexec.contract.Backend"):
        with pytest.raises(anyexec.BackendUnavailable, match="TypeError"):
            anyexec.Executor("odd")


def _ep(name: str, value: str, dist: str) -> EntryPoint:
    ep = EntryPoint(name, value, registry.GROUP)

    class Dist:
        metadata = {"Name": dist}
        version = "1"

    return ep._for(Dist())  # type: ignore[attr-defined,no-any-return]


def test_select_duplicates_warns_and_core_wins() -> None:
    eps = [_ep("thread", "zzz:Other", "zzz-plugin"), _ep("thread", "anyexec.x:T", "anyexec")]
    with pytest.warns(
        RuntimeWarning, match=r"'thread' is registered more than once; using anyexec"
    ):
        chosen = registry._select(eps)
    assert chosen["thread"].value == "anyexec.x:T"


def test_select_duplicates_between_plugins_first_by_name_wins() -> None:
    eps = [_ep("fast", "b:B", "b-dist"), _ep("fast", "a:A", "a-dist"), _ep("ok", "c:C", "c")]
    with pytest.warns(RuntimeWarning, match="ignoring b-dist"):
        chosen = registry._select(eps)
    assert chosen["fast"].value == "a:A" and chosen["ok"].value == "c:C"


def test_core_names_resolve_from_anyexecs_own_metadata_without_a_scan(
    monkeypatch: pytest.MonkeyPatch, refresh_registry: None
) -> None:
    scans: list[int] = []
    real = registry._entry_points

    def counted() -> list[EntryPoint]:
        scans.append(1)
        return real()

    monkeypatch.setattr(registry, "_entry_points", counted)
    for name in ("serial", "thread", "process", "asyncio"):
        assert registry.get(name).name == name
        assert registry.installed(name)
    assert registry.core_names() == {"serial", "thread", "process", "asyncio"}
    assert scans == []
    registry.installed("loky")  # another distribution's name: one full scan
    assert set(registry.names()) >= {"serial", "thread", "process", "asyncio"}
    assert len(scans) == 1
    with pytest.raises(anyexec.BackendNotFound, match="Did you mean 'thread'"):
        registry.get("thraed")
    assert len(scans) == 1


def test_a_plugin_cannot_shadow_a_core_name(plugins: Path) -> None:
    _dist(plugins, "aaa-shadow", {"thread": "shadow_mod:ThreeThreads"}, "shadow_mod", GOOD)
    registry.refresh()
    assert type(registry.get("thread")).__module__ == "anyexec.builtin.thread"  # no scan
    with pytest.warns(RuntimeWarning, match="'thread' is registered more than once; using anyexec"):
        assert {b.name for b in anyexec.backends()} >= {"thread"}
    assert type(registry.get("thread")).__module__ == "anyexec.builtin.thread"


def test_own_metadata_read_directly_matches_importlib_metadata() -> None:
    from importlib.metadata import distribution

    direct = {ep.name: ep.value for ep in registry._core_entry_points()}
    official = {
        ep.name: ep.value
        for ep in distribution("anyexec").entry_points
        if ep.group == registry.GROUP
    }
    assert direct == official and set(direct) == {"serial", "thread", "process", "asyncio"}
    for ep in registry._core_entry_points():
        assert registry._dist_of(ep) == ("anyexec", anyexec.__version__)
        assert issubclass(ep.load(), anyexec.Backend)


def test_parse_group_reads_one_section() -> None:
    text = (
        "[console_scripts]\nx = a:b\n\n[anyexec.backends]\n# a comment\n"
        " fast = os.path:join [extra]\nnested = os:path.join\n[other]\ny = c:d\n"
    )
    eps = registry._parse_group(text, registry.GROUP, registry._FoundDistribution("anyexec", "1"))
    assert [(ep.name, ep.value) for ep in eps] == [
        ("fast", "os.path:join [extra]"),
        ("nested", "os:path.join"),
    ]
    import os.path

    assert eps[0].load() is os.path.join and eps[1].load() is os.path.join


def test_a_fresh_interpreter_picks_a_core_backend_with_no_scan_and_no_parsers(
    tmp_path: Path,
) -> None:
    import os
    import subprocess
    import sys

    code = (
        "import sys, anyexec\n"
        "ex = anyexec.Executor('thread', workers=1)\n"
        "assert ex.submit(int, '7').result(timeout=60) == 7\n"
        "ex.shutdown()\n"
        "anyexec.Executor()\n"
        "print([m for m in ('importlib.metadata', 'difflib', 'tomllib') if m in sys.modules])\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANYEXEC_")}
    run = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"  # no scan, and no parser for a file that is not there
