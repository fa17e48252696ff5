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
        "--anyexec-workers",
        type=int,
        default=2,
        metavar="N",
        help="workers of the executor under test (default 2)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "anyexec_conformance: part of anyexec's conformance suite")
    # With no test paths given, `--anyexec-backend` runs the suite alone. Given paths, only
    # those run: they hold a ConformanceSuite subclass (as anyexec's own tests/ does).
    import pytest

    explicit = getattr(config, "args_source", None) == pytest.Config.ArgsSource.ARGS
    if config.getoption("anyexec_backend") and not explicit:
        config.args[:] = [_SUITE]


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
