"""anyexec's conformance suite, shipped as a pytest plugin.

Run it against any installed backend, with nothing else written::

    python -m pytest -p anyexec.testing --anyexec-backend=NAME

``--anyexec-backend`` can be repeated; ``all`` means every installed backend. Backend
options go with ``--anyexec-option KEY=VALUE`` (repeatable), the worker count with
``--anyexec-workers``. To add fixtures of your own (a cluster to start, a Backend object not
yet registered), subclass :class:`ConformanceSuite` once in a test module::

    from anyexec.testing import ConformanceSuite

    class TestMyBackend(ConformanceSuite):
        @pytest.fixture(scope="class")
        @classmethod
        def anyexec_backend(cls):
            return MyBackend()      # or a registered name

See ``docs/conformance.md`` for what each section checks and the stability promise.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pytest

    from anyexec.testing.suite import ConformanceSuite

__all__ = ["ConformanceSuite"]


def __getattr__(name: str) -> Any:
    # pytest loads on first use only: workers that unpickle anyexec.testing.tasks
    # functions must not pay for importing pytest.
    if name == "ConformanceSuite":
        from anyexec.testing.suite import ConformanceSuite

        return ConformanceSuite
    raise AttributeError(f"module 'anyexec.testing' has no attribute {name!r}")


_SUITE = str(Path(__file__).with_name("conformance.py"))


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("anyexec", "anyexec conformance suite")
    group.addoption(
        "--anyexec-backend",
        action="append",
        default=[],
        metavar="NAME",
        help="run the anyexec conformance suite against backend NAME (repeatable; 'all' "
        "means every installed backend)",
    )
    group.addoption(
        "--anyexec-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an option for the backend under test (repeatable)",
    )
    group.addoption(
        "--anyexec-deadline",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="how long a check waits for something that may hang before failing it "
        "(default 60; the suite needs no pytest-timeout)",
    )
    group.addoption(
        "--anyexec-workers",
        type=int,
        default=2,
        metavar="N",
        help="workers of the executor under test (default 2)",
    )


#: Packages the suite itself needs beyond anyexec's own dependencies (the ``test`` extra
#: installs them). Missing, they are one usage error, never checks skipped in silence.
REQUIRED = {"numpy": "the checks that send large arrays to workers and back"}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "anyexec_conformance: part of anyexec's conformance suite")
    # With no test paths given, `--anyexec-backend` runs the suite alone. Given paths, only
    # those run: they hold a ConformanceSuite subclass (as anyexec's own tests/ does).
    import pytest

    _check_required()
    explicit = getattr(config, "args_source", None) == pytest.Config.ArgsSource.ARGS
    asked = config.getoption("anyexec_backend")
    if asked:
        _check_names(asked)
        if not explicit:
            config.args[:] = [_SUITE]
    elif _named_on_command_line(config) and not explicit:
        raise pytest.UsageError(
            "anyexec.testing: name the backend to check with --anyexec-backend=NAME "
            "(repeatable; 'all' for every installed backend). "
            f"Installed backends: {_installed()}"
        )


_EXIT_STATUS: list[int] = []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _EXIT_STATUS.append(int(exitstatus))


def pytest_unconfigure(config: pytest.Config) -> None:
    """After a check found a hang, end the process once pytest has reported everything.

    What hung (a worker that never ends, a ``shutdown`` that never returns) would otherwise
    block the interpreter's exit, where the standard library joins pool threads, and the
    run would never end: the suite keeps its own deadlines without pytest-timeout. Child
    processes of this one are terminated first.
    """
    import sys

    suite = sys.modules.get("anyexec.testing.suite")
    if suite is None or not suite.HUNG:
        return
    import multiprocessing
    import os

    for child in multiprocessing.active_children():
        child.terminate()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_EXIT_STATUS[-1] if _EXIT_STATUS else 1)


def _installed() -> str:
    from anyexec import backends

    found = [b.name if b.available else f"{b.name} (cannot load: {b.error})" for b in backends()]
    return ", ".join(found) or "none"


def _check_required() -> None:
    import importlib.util

    import pytest

    missing = [name for name in REQUIRED if importlib.util.find_spec(name) is None]
    if missing:
        why = "; ".join(f"{name}, for {REQUIRED[name]}" for name in missing)
        raise pytest.UsageError(
            f"anyexec.testing: the conformance suite needs {', '.join(missing)} ({why}), "
            f"which is not installed. Install the test extra: pip install 'anyexec[test]'"
        )


def _check_names(asked: list[str]) -> None:
    """Every name given to --anyexec-backend loads, or one usage error says why and lists
    the installed backends (instead of one error per test)."""
    import pytest

    from anyexec import registry
    from anyexec.errors import BackendNotFound, BackendUnavailable

    for entry in asked:
        for name in entry.split(","):
            if name in ("", "all"):
                continue
            try:
                registry.get(name)
            except (BackendNotFound, BackendUnavailable) as exc:
                raise pytest.UsageError(f"--anyexec-backend={name}: {exc}") from None


def _named_on_command_line(config: pytest.Config) -> bool:
    """Whether ``-p anyexec.testing`` was given (directly or in PYTEST_ADDOPTS), as
    opposed to a conftest's ``pytest_plugins``, which picks backends itself."""
    import os
    import shlex

    args = [*config.invocation_params.args, *shlex.split(os.environ.get("PYTEST_ADDOPTS", ""))]
    for i, arg in enumerate(args):
        if arg in ("-panyexec.testing", "-p=anyexec.testing"):
            return True
        if arg == "-p" and i + 1 < len(args) and args[i + 1] == "anyexec.testing":
            return True
    return False


def selected_backends(config: pytest.Config) -> list[str]:
    from anyexec import backends

    asked = config.getoption("anyexec_backend") or ["all"]
    names: list[str] = []
    for name in asked:
        for part in name.split(","):
            if part == "all":
                names.extend(b.name for b in backends() if b.available)
            elif part:
                names.append(part)
    return list(dict.fromkeys(names))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "anyexec_backend_name" in metafunc.fixturenames:
        names = selected_backends(metafunc.config)
        metafunc.parametrize("anyexec_backend_name", names, ids=names, scope="class")


def parse_options(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            import pytest

            raise pytest.UsageError(f"--anyexec-option {pair!r}: expected KEY=VALUE")
        out[key.strip()] = value
    return out
