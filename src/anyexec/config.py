"""Who decides the backend: explicit arguments, ``using()``, the environment, a config file.

Highest wins, value by value:

1. explicit arguments to :class:`anyexec.Executor`;
2. the innermost ``with anyexec.using(...)`` (a context variable: each thread and async
   task sees its own);
3. the environment: ``ANYEXEC_BACKEND``, ``ANYEXEC_WORKERS``, ``ANYEXEC_PROFILE``,
   ``ANYEXEC_ALLOW_OVERSUBSCRIBE`` and ``ANYEXEC_<BACKEND>_<OPTION>``
   (``ANYEXEC_DASK_ADDRESS``);
4. the nearest trusted config file, searched from the working directory upward:
   ``anyexec.toml`` or ``[tool.anyexec]`` in ``pyproject.toml``, with named profiles;
5. the default: ``thread`` with one worker per CPU this process may use.

Inside a worker, layers 3 and 4 (inherited from the parent) are skipped and the default is
``serial``, so nested calls never oversubscribe; ``using()`` or arguments inside the task
still choose.

On top of the layers, a caller may declare what its tasks need (``require="sharedmem"``)
or which kind of backend suits them (``prefer="threads"``/``"processes"``); the rule is in
:func:`resolve`, so it is the same whatever the backend.

Config files are data: they are parsed as TOML and never executed. A file that someone
else could have written is skipped with a :class:`~anyexec.errors.ConfigWarning`, and
options that can run code or send tasks elsewhere are refused from a file above the
project root unless it is trusted explicitly (see ``docs/security.md``). Nothing passes
silently: an unknown key in a file or an unknown ``ANYEXEC_*`` variable is a
:class:`ConfigError` naming where it came from and the closest valid name.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from anyexec import registry
from anyexec._record import field, frozen
from anyexec._worker import context as _context
from anyexec.contract import Backend
from anyexec.errors import BackendNotFound, BackendUnavailable, ConfigError, ConfigWarning

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "ENV_ALLOW_OVERSUBSCRIBE",
    "ENV_BACKEND",
    "ENV_PROFILE",
    "ENV_TRUSTED_CONFIG",
    "ENV_WORKERS",
    "PREFER",
    "REQUIRE",
    "Layer",
    "Settings",
    "available_cpus",
    "clear_cache",
    "find_config_file",
    "known_environment",
    "project_root",
    "resolve",
    "using_layer",
    "worker_ceiling",
]

ENV_BACKEND = "ANYEXEC_BACKEND"
ENV_WORKERS = "ANYEXEC_WORKERS"
ENV_PROFILE = "ANYEXEC_PROFILE"
ENV_ALLOW_OVERSUBSCRIBE = "ANYEXEC_ALLOW_OVERSUBSCRIBE"
#: Config files (paths, ``os.pathsep``-separated) trusted to set sensitive options from
#: above the project root, as git's ``safe.directory`` lists trusted repositories.
ENV_TRUSTED_CONFIG = "ANYEXEC_TRUSTED_CONFIG"
_ENV_PREFIX = "ANYEXEC_"
_CORE_ENV = (ENV_BACKEND, ENV_WORKERS, ENV_PROFILE, ENV_ALLOW_OVERSUBSCRIBE, ENV_TRUSTED_CONFIG)

DEFAULT_BACKEND = "thread"
NESTED_BACKEND = "serial"
_FILE_KEYS = ("backend", "workers", "allow_oversubscribe", "initializer", "initargs", "profiles")

#: ``require=`` values: ``"sharedmem"``, the tasks must share the caller's memory.
REQUIRE = ("sharedmem",)
#: ``prefer=`` values and the backend each picks when no layer chose one.
PREFER = {"threads": "thread", "processes": "process"}

#: Worker ceilings per CPU, by what crosses into the workers (``allow_oversubscribe``
#: lifts them). Threads are cheap but each holds a stack and a share of the GIL; processes
#: each hold a whole interpreter. A cluster's workers are elsewhere: no ceiling.
CEILING_PER_CPU = {"nothing": 32, "threads": 32, "processes": 4}

#: Option names that can run code or send tasks and data elsewhere, whatever the backend
#: says (a backend marks its own with ``Option(..., sensitive=True)``). Covers tables of
#: backends that are known but not installed, whose options cannot be looked up.
SENSITIVE_NAMES = frozenset(
    {
        "env",
        "address",
        "scheduler_file",
        "security",
        "client",
        "initializer",
        "initargs",
        "preload",
        "preload_modules",
    }
)

#: Options with which a cluster backend connects to workers elsewhere instead of starting
#: them on this machine.
_REMOTE_OPTIONS = ("address", "scheduler_file", "client")
_RUN_IN = {"nothing": "the caller's thread", "threads": "threads", "processes": "processes"}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_WORKERS_TEXT = re.compile(r"-?[0-9]+\Z")

logger = logging.getLogger("anyexec")


def available_cpus() -> int:
    """CPUs this process may use (affinity-aware), at least 1."""
    count = getattr(os, "process_cpu_count", None)
    if count is not None:
        return int(count() or 1)
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


@frozen
class Layer:
    """What one source says. ``options`` apply to whichever backend wins, unless
    ``backend`` is set in the same layer, in which case only to that backend; ``tables``
    hold per-backend options (``[tool.anyexec.dask]``) that apply only to their backend.
    ``require``/``prefer`` are what the caller declared about its tasks (argument and
    ``using()`` layers only); ``notes`` are remarks for ``anyexec config``."""

    source: str
    backend: str | Backend | None = None
    workers: Any = None
    options: Mapping[str, Any] = field(default_factory=dict)
    tables: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    allow_oversubscribe: Any = None
    require: str | None = None
    prefer: str | None = None
    notes: tuple[str, ...] = ()
    #: Per-worker set-up: a callable (argument, ``using()``) or "module:function" (file).
    initializer: Any = None
    initargs: Any = None


@frozen
class Settings:
    """The resolved choice, and where each value came from (for ``anyexec config``)."""

    backend: Backend
    workers: int
    options: Mapping[str, Any]
    sources: Mapping[str, str]
    config_file: Path | None = None
    allow_oversubscribe: bool = False
    notes: tuple[str, ...] = ()
    #: Run ``initializer(*initargs)`` once in each worker before its first task.
    initializer: Callable[..., Any] | None = None
    initargs: tuple[Any, ...] = ()

    @property
    def name(self) -> str:
        return self.backend.name

    def key(self) -> tuple[Any, ...]:
        """Hashable identity: one shared executor per distinct key (``anyexec.current``)."""
        opts = tuple(sorted((k, _hashable(v)) for k, v in self.options.items()))
        init = (_hashable(self.initializer), _hashable(self.initargs))
        return (self.backend.name, id(self.backend), self.workers, opts, init)


def _hashable(value: Any) -> Any:
    try:
        hash(value)
        return value
    except TypeError:
        return ("unhashable", id(value))


def _closest(word: str, candidates: Iterable[str]) -> str:
    """`` Did you mean 'x'?`` for the nearest candidate, or nothing."""
    import difflib  # only when there is a mistake to report

    pool = sorted(set(candidates))
    close = difflib.get_close_matches(word, pool, n=1, cutoff=0.6) or difflib.get_close_matches(
        word, pool, n=1, cutoff=0.0
    )
    return f" Did you mean {close[0]!r}?" if close else ""


# -- value parsing ---------------------------------------------------------------------

_WORKERS_HELP = (
    "a positive integer, 'auto' (every usable CPU), or a negative count as in joblib "
    "(-1: every usable CPU, -2: all but one)"
)


def parse_workers(value: Any, source: str) -> int:
    """A worker count from any layer: a positive int, ``"auto"``, or (as joblib) ``-1``
    for every usable CPU, ``-2`` for all but one, and so on, never below 1. Text must be
    plain digits (``int()`` would read ``"1_0"`` as 10)."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "auto":
            return available_cpus()
        if not _WORKERS_TEXT.match(text):
            raise ConfigError(f"{source}: workers must be {_WORKERS_HELP}; got {value!r}")
        value = int(text)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(
            f"{source}: workers must be {_WORKERS_HELP}; got {value!r} ({type(value).__name__})"
        )
    if value == 0:
        raise ConfigError(
            f"{source}: workers must be at least 1, got 0 (use 'auto' or -1 for every usable CPU)"
        )
    if value < 0:
        return max(1, available_cpus() + 1 + value)
    return value


def parse_flag(value: Any, source: str) -> bool:
    """A yes/no setting (``allow_oversubscribe``): a bool, or 1/0, true/false, yes/no, on/off."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ConfigError(f"{source}: expected true or false (1/0, yes/no, on/off), got {value!r}")


def _check_choice(name: str, value: Any, valid: Iterable[str], source: str) -> None:
    valid = tuple(valid)
    if value is not None and value not in valid:
        raise ConfigError(
            f"{source}: {name}={value!r} is not one of {', '.join(map(repr, valid))}."
            f"{_closest(str(value), valid)}"
        )


def _per_cpu(backend: Backend, options: Mapping[str, Any]) -> tuple[int | None, str]:
    if backend.crosses == "cluster":
        if any(options.get(k) is not None for k in _REMOTE_OPTIONS):
            return None, "a cluster"
        return CEILING_PER_CPU["processes"], "processes of a cluster started on this machine"
    return CEILING_PER_CPU.get(backend.crosses), _RUN_IN.get(backend.crosses, backend.crosses)


def worker_ceiling(backend: Backend, options: Mapping[str, Any] | None = None) -> int | None:
    """The most workers ``backend`` gets without ``allow_oversubscribe``: 32 per CPU where
    tasks run in threads (or the caller), 4 per CPU where they run in processes on this
    machine (a cluster backend that starts its own cluster here included), none for a
    cluster the backend connects to (``address``, ``scheduler_file``: its workers are
    elsewhere)."""
    per_cpu, _ = _per_cpu(backend, options or {})
    return None if per_cpu is None else per_cpu * available_cpus()


# -- trust -----------------------------------------------------------------------------

_warned: set[Path] = set()


def untrusted_reason(path: Path) -> str | None:
    """Why ``path`` cannot be trusted, or None: it must be owned by the current user or
    root and not writable by group or others (git's ``safe.directory`` rule). Where the
    system has no file owners (Windows) every file is trusted."""
    getuid = getattr(os, "getuid", None)
    if getuid is None:  # pragma: no cover - Windows
        return None
    try:
        st = path.stat()
    except OSError as exc:
        return f"it cannot be inspected ({exc})"
    me = getuid()
    if st.st_uid not in (me, 0):
        return f"it is owned by uid {st.st_uid}, not by you (uid {me}) or root"
    loose = st.st_mode & 0o022
    if loose:
        who = " and ".join(w for w, bit in (("group", 0o020), ("others", 0o002)) if loose & bit)
        return f"it is writable by {who} (mode {st.st_mode & 0o777:o})"
    return None


def _skip_untrusted(path: Path, reason: str) -> None:
    with _file_lock:
        if path in _warned:
            return
        _warned.add(path)
    warnings.warn(
        f"anyexec: skipping config file {path}: {reason}. Someone else could have written "
        f"it. If it is yours, make it so: chown $USER {path}; chmod go-w {path}",
        ConfigWarning,
        stacklevel=4,
    )


def project_root(start: Path | None = None) -> Path:
    """The folder config files below which belong to the project: the nearest folder at or
    above ``start`` (the working directory) holding ``.git``, else the nearest holding
    ``pyproject.toml``, else ``start`` itself."""
    from pathlib import Path

    start = (start or Path.cwd()).resolve()
    folders = (start, *start.parents)
    for marker in (".git", "pyproject.toml"):
        for folder in folders:
            if (folder / marker).exists():
                return folder
    return start


def _explicitly_trusted(path: Path) -> bool:
    listed = _env(ENV_TRUSTED_CONFIG)
    if listed is None:
        return False
    from pathlib import Path

    for item in listed.split(os.pathsep):
        if item.strip() and Path(item.strip()).expanduser().resolve() == path:
            return True
    return False


# -- the config file -------------------------------------------------------------------

_file_cache: dict[str, tuple[Path, dict[str, Any]] | None] = {}
_file_lock = threading.Lock()


def clear_cache() -> None:
    """Forget parsed config files (they are read once per working directory) and which
    untrusted files were warned about."""
    with _file_lock:
        _file_cache.clear()
        _warned.clear()
        _env_checked.clear()


def _read_toml(path: Path) -> dict[str, Any]:
    # Imported here: a program without a config file never pays for the TOML parser.
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on 3.10 only
        import tomli as tomllib

    try:
        with path.open("rb") as fh:
            data: dict[str, Any] = tomllib.load(fh)
            return data
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc}") from None


def find_config_file(start: Path | None = None) -> tuple[Path, dict[str, Any]] | None:
    """The nearest trusted ``anyexec.toml``, or ``pyproject.toml`` with ``[tool.anyexec]``,
    from ``start`` (the working directory) upward, and its anyexec table; cached per
    directory. An untrusted file is skipped with one :class:`ConfigWarning` and the search
    goes on upward."""
    # The search uses os.path, and pathlib is imported only once a file is there: most
    # programs have no config file, and should not pay for pathlib (and urllib.parse).
    here = os.path.realpath(os.getcwd() if start is None else os.fspath(start))
    with _file_lock:
        if here in _file_cache:
            return _file_cache[here]
    found: tuple[Path, dict[str, Any]] | None = None
    for folder in _folders_up(here):
        has_own = os.path.isfile(os.path.join(folder, "anyexec.toml"))
        has_pyproject = os.path.isfile(os.path.join(folder, "pyproject.toml"))
        if not (has_own or has_pyproject):
            continue
        from pathlib import Path

        own = Path(folder, "anyexec.toml")
        if has_own:
            reason = untrusted_reason(own)
            if reason is None:
                found = (own, _read_toml(own))
                break
            _skip_untrusted(own, reason)
        pyproject = Path(folder, "pyproject.toml")
        if has_pyproject:
            reason = untrusted_reason(pyproject)
            if reason is not None:
                # Someone else's project file: skipped, with a warning only if it would
                # have configured anyexec (and an error in it is not ours to report).
                try:
                    wanted = "anyexec" in _read_toml(pyproject).get("tool", {})
                except ConfigError:
                    wanted = False
                if wanted:
                    _skip_untrusted(pyproject, reason)
                continue
            table = _read_toml(pyproject).get("tool", {}).get("anyexec")
            if table is not None:
                if not isinstance(table, dict):
                    raise ConfigError(f"{pyproject}: [tool.anyexec] must be a table")
                found = (pyproject, table)
                break
    with _file_lock:
        _file_cache[here] = found
    return found


def _folders_up(folder: str) -> Iterator[str]:
    """``folder`` (absolute) and each folder above it, up to the root."""
    while True:
        yield folder
        parent = os.path.dirname(folder)
        if parent == folder:
            return
        folder = parent


def _file_label(path: Path) -> str:
    return f"{path} [tool.anyexec]" if path.name == "pyproject.toml" else str(path)


class _FileCheck:
    """Checks one config file as a whole, every table and profile, whichever backend wins:
    unknown keys and backends (typos), option values, and sensitive options from a file
    above the project root. Collects notes for ``anyexec config``."""

    def __init__(self, path: Path, start: Path | None) -> None:
        self.path = path
        self.start = start
        self.prefix = "tool.anyexec." if path.name == "pyproject.toml" else ""
        self.notes: list[str] = []
        self._above: bool | None = None

    def where(self, *parts: str) -> str:
        """``/p/pyproject.toml [tool.anyexec.loky]``: the file and its table."""
        if not parts:
            return _file_label(self.path)
        return f"{self.path} [{self.prefix}{'.'.join(parts)}]"

    def above_root(self) -> bool:
        if self._above is None:
            root = project_root(self.start)
            parent = self.path.parent
            self._above = not (parent == root or root in parent.parents)
        return self._above

    def sensitive(self, key: str, where: str, spec_sensitive: bool) -> None:
        if not (spec_sensitive or key in SENSITIVE_NAMES) or not self.above_root():
            return
        if _explicitly_trusted(self.path):
            return
        root = project_root(self.start)
        raise ConfigError(
            f"{where}: option {key!r} can run code or send your tasks and data elsewhere, "
            f"and this file lies above the project root {root} (the nearest folder with "
            f".git, else with pyproject.toml, else the working directory), so it is not "
            f"trusted to set it. Move the option into the project's own config file or pass "
            f"it as an argument or through using(); or, if the file is yours, trust it: "
            f"{ENV_TRUSTED_CONFIG}={self.path}"
        )

    def table(self, table: Mapping[str, Any], profile: str | None = None) -> None:
        parts = ("profiles", profile) if profile is not None else ()
        where = self.where(*parts)
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: expected a table, got {table!r}")
        for key, value in table.items():
            if key == "profiles" and profile is None:
                if not isinstance(value, dict) or not all(
                    isinstance(v, dict) for v in value.values()
                ):
                    raise ConfigError(f"{where}: 'profiles' must hold tables ([...profiles.NAME])")
                for name, sub in value.items():
                    self.table(sub, name)
            elif key in _FILE_KEYS and key != "profiles":
                self.core_value(key, value, where)
            elif isinstance(value, dict):
                self.backend_table(key, value, (*parts, key))
            else:
                self.unknown_key(key, where)

    def core_value(self, key: str, value: Any, where: str) -> None:
        label = f"{where}: {key}"
        self.sensitive(key, label, False)  # a core setting such as an initializer
        if key == "backend":
            if not isinstance(value, str):
                raise ConfigError(f"{where}: backend must be a string, got {value!r}")
        elif key == "workers":
            parse_workers(value, label)
        elif key == "allow_oversubscribe":
            parse_flag(value, label)
        elif key == "initializer":
            if not isinstance(value, str) or ":" not in value:
                raise ConfigError(
                    f"{label}: must be 'module:function' (a function to import), got {value!r}"
                )
        elif key == "initargs" and not isinstance(value, list):
            raise ConfigError(f"{label}: must be a list of arguments, got {value!r}")

    def unknown_key(self, key: str, where: str) -> None:
        import difflib

        valid = [*_FILE_KEYS, *registry.core_names()]
        if not difflib.get_close_matches(key, valid, n=1):
            valid += [*registry.names(), *registry.KNOWN]  # scans: only for a typo
        raise ConfigError(
            f"{where}: unknown key {key!r}.{_closest(key, valid)} Expected "
            f"{', '.join(_FILE_KEYS)}, or a table of options for one backend (such as "
            f"[{self.prefix}thread])"
        )

    def backend_table(self, name: str, options: Mapping[str, Any], parts: tuple[str, ...]) -> None:
        where = self.where(*parts)
        if not registry.installed(name):
            if name in registry.KNOWN:
                self.notes.append(
                    f"[{self.prefix}{'.'.join(parts)}] is for backend {name!r}, which is not "
                    f"installed ({registry.KNOWN[name]}); its options are not checked"
                )
                for key in options:
                    self.sensitive(key, f"{where} {key}", False)
                return
            valid = [*registry.names(), *registry.KNOWN, *(k for k in _FILE_KEYS)]
            raise ConfigError(
                f"{where}: no backend named {name!r} is installed.{_closest(name, valid)} "
                f"Installed backends: {', '.join(registry.names())}; a table must be named "
                f"after one of them"
            )
        try:
            backend = registry.get(name)
        except BackendUnavailable as exc:
            self.notes.append(f"[{self.prefix}{'.'.join(parts)}] is not checked: {exc}")
            return
        for key, value in options.items():
            spec = backend.options.get(key)
            if spec is None:
                takes = ", ".join(sorted(backend.options)) or "no options"
                raise ConfigError(
                    f"{where}: backend {name!r} does not take option {key!r}."
                    f"{_closest(key, backend.options)} It takes: {takes}"
                )
            self.sensitive(key, f"{where} {key}", spec.sensitive)
            spec.coerce(key, value, f"{where} {key}")


def _file_layer(
    found: tuple[Path, dict[str, Any]], profile: str | None, start: Path | None = None
) -> Layer:
    path, table = found
    label = _file_label(path)
    check = _FileCheck(path, start)
    check.table(table)
    values = {k: v for k, v in table.items() if k != "profiles"}
    if profile is not None:
        profiles = table.get("profiles", {})
        if profile not in profiles:
            known = ", ".join(sorted(profiles)) or "none defined"
            raise ConfigError(
                f"environment variable {ENV_PROFILE}={profile!r}: no profile {profile!r} in "
                f"{label} (profiles: {known})"
            )
        for key, value in profiles[profile].items():
            if isinstance(value, dict) and isinstance(values.get(key), dict):
                values[key] = {**values[key], **value}
            else:
                values[key] = value
        label = f"{label} profile {profile!r}"
    backend = values.pop("backend", None)
    workers = values.pop("workers", None)
    allow = values.pop("allow_oversubscribe", None)
    initializer, initargs = values.pop("initializer", None), values.pop("initargs", None)
    return Layer(
        label,
        backend,
        workers,
        {},
        values,
        allow_oversubscribe=allow,
        notes=tuple(check.notes),
        initializer=initializer,
        initargs=initargs,
    )


# -- the environment -------------------------------------------------------------------


def _env(name: str) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else None


def _env_layer() -> Layer:
    return Layer(
        "environment",
        _env(ENV_BACKEND),
        _env(ENV_WORKERS),
        allow_oversubscribe=_env(ENV_ALLOW_OVERSUBSCRIBE),
    )


def _env_prefix(name: str) -> str:
    return f"{_ENV_PREFIX}{name.upper().replace('-', '_')}_"


def _env_options(backend: Backend) -> dict[str, tuple[Any, str]]:
    prefix = _env_prefix(backend.name)
    found = {}
    for option in backend.options:
        var = prefix + option.upper()
        value = _env(var)
        if value is not None:
            found[option] = (value, f"environment variable {var}={value!r}")
    return found


def known_environment() -> list[str]:
    """Every ``ANYEXEC_*`` variable anyexec reads: the core ones and one per option of each
    installed backend (scans installed distributions)."""
    known = list(_CORE_ENV)
    for name in registry.names():
        try:
            backend = registry.get(name)
        except BackendUnavailable:
            continue
        known += [_env_prefix(name) + option.upper() for option in backend.options]
    return sorted(known)


_env_checked: dict[frozenset[tuple[str, str]], tuple[str, ...]] = {}


def _check_environment(notes: list[str]) -> None:
    """Every set ``ANYEXEC_*`` variable must be one anyexec reads; a typo is a
    ConfigError naming the variable and the closest valid one. Variables of core backends
    are checked without scanning installed distributions; the scan happens only for a
    variable that names no core backend. Each distinct set of names is checked once."""
    environ = os.environ
    ours = [n for n in environ if n.startswith(_ENV_PREFIX)]  # keys only: values cost more
    names = frozenset((n, environ[n]) for n in ours if environ[n] != "")
    if not names:
        return
    if names in _env_checked:
        notes.extend(_env_checked[names])
        return
    mine: list[str] = []
    for var, _ in sorted(names):
        if var not in _CORE_ENV:
            _check_env_option(var, mine)
    notes.extend(mine)
    if len(_env_checked) < 64:
        _env_checked[names] = tuple(mine)


def _check_env_option(var: str, notes: list[str]) -> None:
    candidates = sorted(registry.core_names(), key=len, reverse=True)
    matched = [n for n in candidates if var.startswith(_env_prefix(n))]
    if not matched:
        candidates = sorted(registry.names(), key=len, reverse=True)
        matched = [n for n in candidates if var.startswith(_env_prefix(n))]
    if not matched:
        for name in registry.KNOWN:
            if var.startswith(_env_prefix(name)) and not registry.installed(name):
                notes.append(
                    f"environment variable {var} is for backend {name!r}, which is not "
                    f"installed ({registry.KNOWN[name]})"
                )
                return
        raise ConfigError(
            f"environment variable {var}={os.environ[var]!r}: anyexec reads no such variable."
            f"{_closest(var, known_environment())} It reads {', '.join(_CORE_ENV)} and "
            f"{_ENV_PREFIX}<BACKEND>_<OPTION> for installed backends "
            f"({', '.join(registry.names())})"
        )
    name = matched[0]
    try:
        backend = registry.get(name)
    except BackendUnavailable:
        return  # selecting it reports why it cannot load
    option = var[len(_env_prefix(name)) :].lower()
    spec = backend.options.get(option)
    if spec is None:
        valid = [_env_prefix(name) + o.upper() for o in backend.options]
        takes = ", ".join(sorted(backend.options)) or "no options"
        raise ConfigError(
            f"environment variable {var}={os.environ[var]!r}: backend {name!r} does not take "
            f"option {option!r}.{_closest(var, valid)} It takes: {takes}"
        )
    spec.coerce(option, os.environ[var], f"environment variable {var}={os.environ[var]!r}")


# -- using() ---------------------------------------------------------------------------


def using_layer(
    backend: str | Backend | None,
    workers: Any,
    options: Mapping[str, Any],
    *,
    allow_oversubscribe: Any = None,
    require: str | None = None,
    prefer: str | None = None,
    initializer: Any = None,
    initargs: Any = None,
) -> Layer:
    shown = ", ".join(
        [f"backend={_backend_label(backend)!r}"] * (backend is not None)
        + [f"workers={workers!r}"] * (workers is not None)
        + [f"allow_oversubscribe={allow_oversubscribe!r}"] * (allow_oversubscribe is not None)
        + [f"require={require!r}"] * (require is not None)
        + [f"prefer={prefer!r}"] * (prefer is not None)
        + [f"initializer={initializer!r}"] * (initializer is not None)
        + [f"initargs={initargs!r}"] * (initargs is not None)
        + [f"{k}={v!r}" for k, v in options.items()]
    )
    source = f"using({shown})"
    _check_choice("require", require, REQUIRE, source)
    _check_choice("prefer", prefer, PREFER, source)
    return Layer(
        source,
        backend,
        workers,
        dict(options),
        allow_oversubscribe=allow_oversubscribe,
        require=require,
        prefer=prefer,
        initializer=initializer,
        initargs=initargs,
    )


@contextlib.contextmanager
def push(layer: Layer) -> Iterator[None]:
    token = _context.USING.set((*_context.USING.get(), layer))
    try:
        yield
    finally:
        _context.USING.reset(token)


# -- resolution ------------------------------------------------------------------------


def _backend_label(backend: str | Backend | None) -> str:
    if isinstance(backend, Backend):
        return backend.name or type(backend).__name__
    return str(backend)


def _lookup(backend: str | Backend, source: str) -> Backend:
    if isinstance(backend, Backend):
        if not backend.name:
            backend.name = type(backend).__name__
        return backend
    if not isinstance(backend, str) or not backend.strip():
        raise ConfigError(f"{source}: backend must be a backend name, got {backend!r}")
    try:
        return registry.get(backend.strip())
    except BackendNotFound as exc:
        raise BackendNotFound(f"{source}: {exc}") from None
    except BackendUnavailable as exc:
        raise BackendUnavailable(f"{source}: {exc}") from exc.__cause__


def _layer_label(layer: Layer, what: str) -> str:
    if layer.source == "environment":
        env = {"backend": ENV_BACKEND, "workers": ENV_WORKERS}.get(what, ENV_ALLOW_OVERSUBSCRIBE)
        value = {"backend": layer.backend, "workers": layer.workers}.get(
            what, layer.allow_oversubscribe
        )
        return f"environment variable {env}" + (f"={value!r}" if what != "backend" else "")
    return f"{layer.source}: {what}" if what != "backend" else layer.source


def resolve(
    backend: str | Backend | None = None,
    workers: Any = None,
    options: Mapping[str, Any] | None = None,
    *,
    cwd: Path | None = None,
    allow_oversubscribe: Any = None,
    require: str | None = None,
    prefer: str | None = None,
    initializer: Any = None,
    initargs: Any = None,
) -> Settings:
    """Resolve every layer into :class:`Settings`; raises ConfigError naming the source.

    Called by ``Executor()``, ``anyexec.current()`` (so by ``anyexec.map``/``submit``) and
    ``anyexec config``. ``require``/``prefer`` are what the caller declares about its tasks
    (see ``docs/library-use.md``):

    - ``require="sharedmem"``: the tasks must share the caller's memory. If the resolved
      backend runs them in other processes or a cluster, the call runs on ``thread`` with
      the same worker count instead, logged once at INFO on the ``anyexec`` logger; a
      backend named in the same call (or the same ``using()``) is a ConfigError instead.
      It holds if any enclosing ``using()`` requires it.
    - ``prefer="threads"``/``"processes"``: picks ``thread``/``process`` only when no
      argument, ``using()``, environment variable or config file chose a backend (and not
      inside a worker, where nested calls stay ``serial``). The innermost one applies.
    """
    _check_choice("require", require, REQUIRE, "argument")
    _check_choice("prefer", prefer, PREFER, "argument")
    layers: list[Layer] = [
        Layer(
            "argument",
            backend,
            workers,
            dict(options or {}),
            allow_oversubscribe=allow_oversubscribe,
            require=require,
            prefer=prefer,
            initializer=initializer,
            initargs=initargs,
        )
    ]
    layers.extend(reversed(_context.USING.get()))
    nested = _context.IN_WORKER.get()
    found = None
    notes: list[str] = []
    if not nested:
        _check_environment(notes)
        layers.append(_env_layer())
        found = find_config_file(cwd)
        if found is not None:
            file_layer = _file_layer(found, _env(ENV_PROFILE), cwd)
            notes += file_layer.notes
            layers.append(file_layer)
        elif _env(ENV_PROFILE) is not None:
            raise ConfigError(
                f"environment variable {ENV_PROFILE}={_env(ENV_PROFILE)!r}, but no anyexec.toml "
                f"or pyproject.toml with [tool.anyexec] was found from {cwd or os.getcwd()} upward"
            )

    sources: dict[str, str] = {}
    required = next((layer for layer in layers if layer.require is not None), None)
    preferred = next((layer for layer in layers if layer.prefer is not None), None)
    chosen = next((layer for layer in layers if layer.backend is not None), None)
    if chosen is None:
        if nested:
            name, why = NESTED_BACKEND, "default inside a worker (nested call)"
        else:
            name, why = DEFAULT_BACKEND, "default"
        if preferred is not None and not nested:
            pick = PREFER[preferred.prefer]  # type: ignore[index]
            if not (required is not None and pick == "process"):
                name = pick
                why = (
                    f"{preferred.source}: prefer={preferred.prefer!r} (no argument, using(), "
                    f"environment variable or config file chose a backend)"
                )
        the_backend, sources["backend"] = _lookup(name, why), why
    else:
        label = _layer_label(chosen, "backend")
        the_backend = _lookup(chosen.backend, label)  # type: ignore[arg-type]
        sources["backend"] = label

    worker_layer = next((layer for layer in layers if layer.workers is not None), None)
    if worker_layer is None:
        count = 1 if nested else available_cpus()
        sources["workers"] = (
            "default (CPUs this process may use)" if not nested else sources["backend"]
        )
    else:
        label = _layer_label(worker_layer, "workers")
        count = parse_workers(worker_layer.workers, label)
        sources["workers"] = label
    if the_backend.max_workers is not None:
        count = min(count, the_backend.max_workers)

    replaced: str | None = None
    if required is not None and the_backend.crosses in ("processes", "cluster"):
        if chosen is not None and chosen is required:
            raise ConfigError(
                f"{chosen.source}: backend {the_backend.name!r} runs tasks in other "
                f"{the_backend.crosses}, but the same call says require='sharedmem' (the "
                f"tasks must share the caller's memory). Drop the backend and let the "
                f"requirement pick 'thread', or drop require= if the tasks can be pickled"
            )
        replaced = the_backend.name
        why = (
            f"{required.source}: require='sharedmem' (backend {replaced!r}, from "
            f"{sources['backend']}, runs tasks in other {the_backend.crosses})"
        )
        logger.info(
            "anyexec: running on 'thread' with %d workers instead of %r (from %s): the "
            "caller requires shared memory (require='sharedmem') and %r runs tasks in other %s",
            count,
            replaced,
            sources["backend"],
            replaced,
            the_backend.crosses,
        )
        the_backend, sources["backend"] = _lookup("thread", why), why

    allow_layer = next((layer for layer in layers if layer.allow_oversubscribe is not None), None)
    allow = False
    if allow_layer is not None:
        allow = parse_flag(
            allow_layer.allow_oversubscribe, _layer_label(allow_layer, "allow_oversubscribe")
        )
        sources["allow_oversubscribe"] = _layer_label(allow_layer, "allow_oversubscribe")
    raw: dict[str, tuple[Any, str]] = {}
    name = the_backend.name
    for layer in reversed(layers):  # lowest first, so higher layers overwrite
        applies = layer.backend is None or _backend_label(layer.backend) == name
        if applies:
            for key, value in layer.options.items():
                raw[key] = (value, f"{layer.source}: option {key}")
        for key, value in layer.tables.get(name, {}).items():
            raw[key] = (value, f"{layer.source}: [{name}] {key}")
        if layer.source == "environment":
            raw.update(_env_options(the_backend))
    options_out: dict[str, Any] = {}
    for key, (value, source) in raw.items():
        spec = the_backend.options.get(key)
        if spec is None:
            if replaced is not None:
                notes.append(f"{source}: not used, since the call runs on 'thread' instead")
                continue
            takes = ", ".join(sorted(the_backend.options)) or "no options"
            raise ConfigError(
                f"{source}: backend {name!r} does not take option {key!r}."
                f"{_closest(key, the_backend.options)} It takes: {takes}"
            )
        options_out[key] = spec.coerce(key, value, source)
        sources[f"option {key}"] = source
    per_cpu, run_in = _per_cpu(the_backend, options_out)
    ceiling = None if per_cpu is None else per_cpu * available_cpus()
    if ceiling is not None and count > ceiling and not allow:
        raise ConfigError(
            f"{sources['workers']}: {count} workers exceed the ceiling for backend "
            f"{the_backend.name!r} of {ceiling} ({per_cpu} per CPU × {available_cpus()} "
            f"usable CPUs, for tasks that run in {run_in}). "
            f"Use fewer workers, or lift the ceiling with allow_oversubscribe=True "
            f"(an argument, using(), {ENV_ALLOW_OVERSUBSCRIBE}=1 or "
            f"allow_oversubscribe = true in the config file)"
        )

    init, init_args = _initializer(layers, sources)
    return Settings(
        the_backend,
        count,
        options_out,
        sources,
        found[0] if found else None,
        allow,
        tuple(dict.fromkeys(notes)),
        init,
        init_args,
    )


def _initializer(
    layers: list[Layer], sources: dict[str, str]
) -> tuple[Callable[..., Any] | None, tuple[Any, ...]]:
    """The highest layer's ``initializer`` (a callable, or "module:function" from a file,
    imported here) with its ``initargs``."""
    layer = next((la for la in layers if la.initializer is not None), None)
    if layer is None:
        stray = next((la for la in layers if la.initargs is not None), None)
        if stray is not None:
            raise ConfigError(f"{_layer_label(stray, 'initargs')}: given without initializer")
        return None, ()
    label = _layer_label(layer, "initializer")
    fn = layer.initializer
    if isinstance(fn, str):
        module, _, name = fn.partition(":")
        import importlib

        try:
            fn = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"{label}: cannot import {layer.initializer!r}: {exc}") from None
    if not callable(fn):
        raise ConfigError(f"{label}: initializer must be callable, got {fn!r}")
    args = layer.initargs if layer.initargs is not None else ()
    if isinstance(args, (str, bytes)) or not isinstance(args, (tuple, list)):
        raise ConfigError(f"{label}: initargs must be a tuple or list, got {args!r}")
    sources["initializer"] = label
    return fn, tuple(args)
