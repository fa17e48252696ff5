"""What ``import anyexec`` and a first thread map cost: which modules they import.

A raw ``ThreadPoolExecutor`` starts in a few milliseconds, so every module the core imports
on that path shows up in the start-up of a program that uses anyexec once. The heavy ones
are imported only where they are needed (pickling, shared arrays, config files, the CLI,
measurement, process backends). These tests check, in a fresh interpreter, that they stay
out of a thread-backend map, and that the light stand-ins behave like what they replace.
No timing is asserted: ``benchmarks/startup.py`` measures the time.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from anyexec._record import FrozenInstanceError, field, frozen
from anyexec._worker.loops import is_async

#: Not needed to run a thread or asyncio map, and each costs a millisecond or more at import
#: (or brings modules that do).
HEAVY = (
    "dataclasses",  # and with it inspect, ast, dis
    "inspect",
    "ast",
    "dis",
    "pathlib",  # and with it urllib.parse, ipaddress
    "urllib.parse",
    "tomllib",  # config files, only when one exists
    "tomli",
    "pickle",  # only where calls cross into processes
    "uuid",  # and platform
    "platform",
    "tempfile",  # shared arrays
    "shutil",
    "signal",
    "multiprocessing",
    "concurrent.futures.process",
    "importlib.metadata",  # built-in backends resolve without scanning distributions
    "email",
    "zipfile",
    "numpy",
    "asyncio",
    "anyio",
    "anyexec._shared",
    "anyexec.builtin.process",
    "anyexec.cli",
    "anyexec.measure",
    "anyexec.bench",
    "anyexec.tune",
    "anyexec.workloads",
)


def _fresh(code: str, cwd: Path, **env: str) -> Any:
    """Run ``code`` in a new interpreter in ``cwd``; what it prints last, as JSON."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ANYEXEC_")}
    clean.update(env)
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


_THREAD_MAP = (
    "import json, sys\n"
    "import anyexec\n"
    "assert list(anyexec.map(abs, range(-3, 3))) == [3, 2, 1, 0, 1, 2]\n"
    "with anyexec.Executor('thread', workers=2) as ex:\n"
    "    assert list(ex.map(abs, [-1, -2])) == [1, 2]\n"
    "    assert ex.submit(abs, -5).result() == 5\n"
    "print(json.dumps(sorted(sys.modules)))\n"
)


def test_a_thread_map_imports_none_of_the_heavy_modules(tmp_path: Path) -> None:
    loaded = set(_fresh(_THREAD_MAP, tmp_path))
    assert "anyexec.builtin.thread" in loaded  # the map did run on the thread backend
    heavy = sorted(m for m in HEAVY if m in loaded)
    assert not heavy, f"a thread map imported {heavy}"


def test_a_failing_thread_task_still_reports_its_error(tmp_path: Path) -> None:
    code = (
        "import json, sys\n"
        "import anyexec\n"
        "with anyexec.Executor('thread', workers=2) as ex:\n"
        "    try:\n"
        "        list(ex.map(int, ['1', 'x']))\n"
        "    except ValueError as exc:\n"
        "        print(json.dumps(str(exc)))\n"
    )
    assert "invalid literal for int()" in _fresh(code, tmp_path)


def test_the_config_layers_are_honoured_on_the_first_executor(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "pyproject.toml").write_text(
        '[project]\nname = "p"\n\n[tool.anyexec]\nbackend = "thread"\nworkers = 3\n'
    )
    code = (
        "import json, anyexec\n"
        "ex = anyexec.Executor()\n"
        "print(json.dumps([ex.backend, ex.workers, str(ex.settings.config_file)]))\n"
    )
    found = _fresh(code, project / "src")
    assert found == ["thread", 3, str((project / "pyproject.toml").resolve())]
    # The environment wins over the file.
    assert _fresh(code, project / "src", ANYEXEC_WORKERS="2")[:2] == ["thread", 2]
    assert _fresh(code, project / "src", ANYEXEC_BACKEND="serial")[0] == "serial"
    # A pyproject.toml without [tool.anyexec] configures nothing.
    (project / "pyproject.toml").write_text('[project]\nname = "p"\n')
    assert _fresh(code, project / "src")[2] == "None"


# -- is_async answers as inspect.iscoroutinefunction does ---------------------------------


async def _coro() -> None:
    pass


def _plain() -> None:
    pass


class _AsyncCall:
    async def __call__(self) -> None:
        pass


class _Methods:
    def sync(self) -> None:
        pass

    async def coro(self) -> None:
        pass


@pytest.mark.parametrize(
    "fn",
    [
        _coro,
        _plain,
        int,
        len,
        print,
        str.upper,
        (1).__add__,
        lambda: 0,
        _AsyncCall(),
        _Methods().sync,
        _Methods().coro,
        functools.partial(_coro),
        functools.partial(_plain),
    ],
    ids=repr,
)
def test_is_async_agrees_with_inspect(fn: Any) -> None:
    call = type(fn).__dict__.get("__call__")
    expected = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(call)
    assert is_async(fn) is expected


def test_is_async_without_inspect_imported(tmp_path: Path) -> None:
    code = (
        "import json, sys\n"
        "from anyexec._worker.loops import is_async\n"
        "async def a(): pass\n"
        "def s(): pass\n"
        "found = [is_async(a), is_async(s), is_async(int), is_async(len)]\n"
        "print(json.dumps([found, 'inspect' in sys.modules]))\n"
    )
    assert _fresh(code, tmp_path) == [[True, False, False, False], False]


# -- frozen records behave like frozen dataclasses -----------------------------------------


@frozen
class Point:
    x: int
    y: int = 0
    tags: list[str] = field(default_factory=list)


def test_record_init_defaults_and_factories() -> None:
    p = Point(1)
    assert (p.x, p.y, p.tags) == (1, 0, [])
    assert Point(1, 2).y == 2 and Point(x=1, y=3).y == 3
    assert Point(1).tags is not p.tags  # a fresh default each time
    with pytest.raises(TypeError, match=r"missing required argument: 'x'"):
        Point()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'z'"):
        Point(1, z=2)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"multiple values for argument 'x'"):
        Point(1, x=2)  # type: ignore[misc]
    with pytest.raises(TypeError, match=r"takes 3 positional arguments but 4"):
        Point(1, 2, [], 4)  # type: ignore[call-arg]


def test_record_is_immutable_and_compares_by_value() -> None:
    p = Point(1, 2)
    with pytest.raises(FrozenInstanceError, match=r"cannot assign to field 'x'"):
        p.x = 5  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del p.y  # type: ignore[misc]
    assert p == Point(1, 2) and p != Point(1, 3) and p != (1, 2, [])
    assert repr(p) == "Point(x=1, y=2, tags=[])"
    assert hash(Point(1, 2, ())) == hash(Point(1, 2, ()))  # type: ignore[arg-type]
    assert pickle.loads(pickle.dumps(p)) == p


def test_record_rejects_a_required_field_after_a_default() -> None:
    with pytest.raises(TypeError, match=r"field 'b' without a default follows one with"):

        @frozen
        class Bad:
            a: int = 0
            b: int


# -- plugin discovery reads entry_points.txt, as importlib.metadata would ------------------


def _info(site: Path, folder: str, name: str, text: str | None) -> None:
    info = site / folder
    info.mkdir()
    meta = "PKG-INFO" if folder.endswith(".egg-info") else "METADATA"
    (info / meta).write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n\nBody: no\n")
    if text is not None:
        (info / "entry_points.txt").write_text(text)


def _found(eps: Any) -> list[tuple[str, str, tuple[str, str]]]:
    from anyexec import registry

    return sorted((ep.name, ep.value, registry._dist_of(ep)) for ep in eps)


def test_entry_points_read_from_the_files_match_importlib_metadata(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from importlib.metadata import entry_points

    from anyexec import registry

    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    group = "[anyexec.backends]\n"
    _info(first, "anyexec_one-1.0.dist-info", "anyexec-one", group + "one = one_mod:One\n")
    _info(first, "Anyexec.Legacy-1.0-py3.11.egg-info", "Anyexec.Legacy", group + "old = o:Old\n")
    _info(first, "other_tool-2.0.dist-info", "other-tool", "[console_scripts]\nt = m:main\n")
    _info(first, "no_entry_points-1.0.dist-info", "no-entry-points", None)
    # The same distribution further down sys.path is shadowed, as in importlib.metadata.
    _info(second, "anyexec_one-0.9.dist-info", "anyexec-one", group + "one = stale:One\n")
    _info(second, "anyexec_two-1.0.dist-info", "anyexec-two", "# c\n" + group + "two=t:Two\n")
    monkeypatch.syspath_prepend(str(second))
    monkeypatch.syspath_prepend(str(first))

    fast = registry._path_entry_points()
    assert fast is not None
    assert _found(fast) == _found(entry_points(group=registry.GROUP))
    assert ("one", "one_mod:One", ("anyexec-one", "1.0")) in _found(fast)
    assert ("old", "o:Old", ("Anyexec.Legacy", "1.0")) in _found(fast)


def test_a_zip_on_sys_path_leaves_discovery_to_importlib_metadata(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from anyexec import registry

    archive = tmp_path / "plugins.zip"
    archive.write_bytes(b"")
    monkeypatch.syspath_prepend(str(archive))
    assert registry._path_entry_points() is None
    assert {"serial", "thread"} <= {ep.name for ep in registry._entry_points()}


def test_an_import_hook_that_lists_distributions_leaves_discovery_to_importlib_metadata(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from anyexec import registry

    class Hook:
        def find_spec(self, *args: Any) -> None:
            return None

        def find_distributions(self, *args: Any) -> list[Any]:
            return []

    monkeypatch.setattr(sys, "meta_path", [Hook(), *sys.meta_path])
    assert registry._path_entry_points() is None


def test_a_plugin_backend_resolves_without_importlib_metadata(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    _info(site, "anyexec_few-1.0.dist-info", "anyexec-few", "[anyexec.backends]\nfew = few:Few\n")
    (site / "few.py").write_text(
        "from anyexec.builtin.thread import ThreadBackend\n\n"
        "class Few(ThreadBackend):\n    max_workers = 2\n"
    )
    code = (
        "import json, sys\n"
        "import anyexec\n"
        "with anyexec.Executor('few', workers=8) as ex:\n"
        "    found = [ex.backend, ex.workers, ex.submit(abs, -3).result()]\n"
        "print(json.dumps([found, 'importlib.metadata' in sys.modules]))\n"
    )
    path = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    assert _fresh(code, tmp_path, PYTHONPATH=path) == [["few", 2, 3], False]


class Labelled(Point):
    pass


def test_record_subclass_keeps_its_own_name_and_pickles_by_state() -> None:
    p = Labelled(1, 2)
    assert repr(p) == "Labelled(x=1, y=2, tags=[])"
    back = pickle.loads(pickle.dumps(p))
    assert type(back) is Labelled and back == p
