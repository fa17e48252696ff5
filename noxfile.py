"""The test matrix: Python 3.10-3.13 × backend, plus lint, docs and bench.

``nox -l`` lists every session; ``nox -s "tests-3.12(dask)"`` runs one cell.
Each ``tests`` cell installs the core plus only that backend's distribution, which also
proves that the core never imports a plugin's dependencies.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import nox

nox.needs_version = ">=2024.3.2"
nox.options.error_on_missing_interpreters = True
nox.options.default_venv_backend = "uv" if shutil.which("uv") else "virtualenv"
nox.options.sessions = ["lint", "tests"]

#: The one list of Python versions.
PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
#: The one list of backends, with the distribution that provides each (None: the core).
BACKENDS = {
    "serial": None,
    "thread": None,
    "process": None,
    "asyncio": None,
    "loky": "backends/anyexec-loky",
    "dask": "backends/anyexec-dask",
}


def _let_pyenv_find_every_version() -> None:
    """pyenv's shims answer ``python3.12`` only for versions it is told to expose; expose
    every installed version nox asks for, keeping the current one first."""
    if shutil.which("pyenv") is None or "PYENV_VERSION" in os.environ:
        return

    def ask(*args: str) -> list[str]:
        done = subprocess.run(["pyenv", *args], capture_output=True, text=True, check=False)
        return done.stdout.split()

    installed = ask("versions", "--bare")
    wanted = [v for v in installed if any(v == p or v.startswith(p + ".") for p in PYTHONS)]
    current = [v for name in ask("version-name") for v in name.split(":")]
    if wanted:
        os.environ["PYENV_VERSION"] = ":".join(dict.fromkeys([*current, *wanted]))


_let_pyenv_find_every_version()


def _install(session: nox.Session, *extras_and_dists: str) -> None:
    session.install(*[arg for item in extras_and_dists for arg in ("-e", item)])


@nox.session(python=PYTHONS)
@nox.parametrize("backend", list(BACKENDS), ids=list(BACKENDS))
def tests(session: nox.Session, backend: str) -> None:
    """Unit tests and the conformance suite for one backend, only its distribution installed."""
    dist = BACKENDS[backend]
    _install(session, ".[test]", *([dist] if dist else []))
    session.run("python", "-m", "pytest", "tests", f"--anyexec-backend={backend}", *session.posargs)


@nox.session(python=PYTHONS[-1])
def lint(session: nox.Session) -> None:
    """ruff and mypy (strict) over the core and the backends/ distributions."""
    _install(session, ".[dev]", *[d for d in BACKENDS.values() if d])
    session.run("ruff", "check", "src", "backends", "tests", "benchmarks", "noxfile.py")
    session.run("mypy")


@nox.session(python=PYTHONS[-1])
def docs(session: nox.Session) -> None:
    """Build the documentation in docs/ with mkdocs, strict (warnings are errors)."""
    session.install("mkdocs>=1.5")
    session.run("mkdocs", "build", "--strict", "--site-dir", "build/site")


@nox.session(python=PYTHONS[-1])
def bench(session: nox.Session) -> None:
    """`anyexec bench` over every backend, then the side-by-side comparison with the peers."""
    _install(session, ".[bench,plot]", *[d for d in BACKENDS.values() if d])
    session.install("joblib", "mpire")
    session.run(
        "anyexec",
        "bench",
        "--json",
        "build/bench.json",
        "--plot",
        "build/bench.png",
        *session.posargs,
    )
    session.run("python", "benchmarks/compare.py", "--out", "build/compare.md")
