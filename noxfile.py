"""The test matrix: Python 3.10-3.13 × backend, plus lint, docs, bench and release.

``nox -l`` lists every session; ``nox -s "tests-3.12(dask)"`` runs one cell.
Each ``tests`` cell installs the core plus only that backend's distribution, which also
proves that the core never imports a plugin's dependencies.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

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


#: The three distributions, released together with the version in VERSION.
DISTRIBUTIONS = [".", *[d for d in BACKENDS.values() if d]]
#: What an sdist must never hold: caches, build output, virtual environments.
NOT_IN_SDIST = {
    ".hypothesis",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    ".nox",
    "__pycache__",
    "build",
    "dist",
    "site",
    "bench-results",
}
#: Where the release session plants a file of each kind it checks the sdists leave out.
DECOYS = [
    ".hypothesis/decoy",
    ".pytest_cache/decoy",
    ".venv-decoy/decoy",
    "build/decoy",
    "dist/decoy",
    "src/anyexec/__pycache__/decoy.pyc",
    "backends/anyexec-dask/.hypothesis/decoy",
    "backends/anyexec-loky/build/decoy",
]


def _sdist_problems(sdist: Path) -> list[str]:
    """Members of an sdist that are caches, build output, virtual environments or compiled
    files, or links that point outside the archive."""
    bad = []
    with tarfile.open(sdist) as tar:
        for member in tar.getmembers():
            parts = Path(member.name).parts[1:]  # below the top folder, name-version/
            if any(p in NOT_IN_SDIST or p.startswith(".venv") for p in parts[:-1]) or (
                member.name.endswith((".pyc", ".pyo"))
            ):
                bad.append(member.name)
            elif member.issym():
                target = os.path.normpath(Path(member.name).parent / member.linkname)
                if target.startswith("..") or os.path.isabs(member.linkname):
                    bad.append(f"{member.name} -> {member.linkname}")
    return bad


def _plant_decoys() -> list[Path]:
    """Put one file of each kind the sdists must leave out into the tree (a clean clone has
    none, which would make the check vacuous); returns what to remove afterwards."""
    made = []
    for decoy in DECOYS:
        path = Path(decoy)
        if path.exists():
            continue
        top = next((p for p in reversed(path.parents) if not p.exists()), path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("must not reach an sdist\n")
        made.append(top)
    return made


@nox.session(python=PYTHONS[-1])
def release(session: nox.Session) -> None:
    """Build the three sdists and wheels, check them, install the wheels into a clean
    virtual environment outside the tree, and run ``anyexec --version``, ``anyexec
    backends`` and the conformance suite on every backend from there."""
    session.install("build", "twine", "check-wheel-contents")
    version = Path("VERSION").read_text().strip()
    root = Path.cwd()
    work = Path(tempfile.mkdtemp(prefix="anyexec-release-"))
    try:
        _release(session, version, root, work)
    finally:
        os.chdir(root)
        shutil.rmtree(work, ignore_errors=True)


def _release(session: nox.Session, version: str, root: Path, work: Path) -> None:
    """The release session's steps, in ``work`` (a temporary folder outside the tree); the
    checked distributions are copied to dist/ at the end."""
    dist = work / "dist"
    made = _plant_decoys()
    try:
        for folder in DISTRIBUTIONS:
            session.run("python", "-m", "build", "--outdir", str(dist), folder)
    finally:
        for path in made:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    sdists, wheels = sorted(dist.glob("*.tar.gz")), sorted(dist.glob("*.whl"))
    if len(sdists) != len(DISTRIBUTIONS) or len(wheels) != len(DISTRIBUTIONS):
        session.error(f"expected {len(DISTRIBUTIONS)} sdists and wheels in {dist}")
    wrong = [f.name for f in sdists + wheels if f"-{version}" not in f.name]
    if wrong:
        session.error(f"not version {version} (the file VERSION): {', '.join(wrong)}")
    session.run("twine", "check", "--strict", *map(str, sdists + wheels))
    session.run("check-wheel-contents", *map(str, wheels))
    for sdist in sdists:
        problems = _sdist_problems(sdist)
        if problems:
            session.error(f"{sdist.name} holds files it must not: {', '.join(problems)}")
    session.log(f"the sdists hold no cache, build output or venv ({len(DECOYS)} decoys)")

    # A clean environment outside the tree, the core installed with its extras as users
    # install it: the extras' exact pins must be met by the backend wheels built here.
    venv = work / "venv"
    session.run("python", "-m", "venv", str(venv))
    bin_dir = venv / ("Scripts" if os.name == "nt" else "bin")
    python = str(bin_dir / "python")
    core = next(w for w in wheels if w.name.startswith("anyexec-"))
    backends = [str(w) for w in wheels if w != core]
    session.run(python, "-m", "pip", "install", "-q", "--upgrade", "pip", external=True)
    session.run(
        python, "-m", "pip", "install", "-q", f"{core}[loky,dask,test]", *backends, external=True
    )
    session.run(python, "-m", "pip", "check", external=True)
    session.chdir(work)
    session.run(
        python,
        "-c",
        "import anyexec, anyexec_loky, anyexec_dask, sys; "
        "inside = [m.__file__ for m in (anyexec, anyexec_loky, anyexec_dask) "
        "if not m.__file__.startswith(sys.prefix)]; "
        "assert not inside, f'imported from outside the clean venv: {inside}'",
        external=True,
    )
    shown = session.run(str(bin_dir / "anyexec"), "--version", external=True, silent=True)
    print(shown)
    for name in ("anyexec", "anyexec-loky", "anyexec-dask"):
        if f"  {name} {version}: " not in str(shown):
            session.error(f"anyexec --version does not list {name} {version}")
    session.run(str(bin_dir / "anyexec"), "backends", external=True)
    # No test paths: the plugin collects only its own suite, once per backend.
    session.run(
        python,
        "-m",
        "pytest",
        "-p",
        "anyexec.testing",
        "--anyexec-backend=all",
        "-p",
        "no:cacheprovider",
        "-q",
        *session.posargs,
        external=True,
    )
    shutil.copytree(dist, root / "dist", dirs_exist_ok=True)
    session.log(f"release checks passed; the distributions are in {root / 'dist'}")
