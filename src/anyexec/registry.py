"""Finding backends: entry points in the group ``anyexec.backends``, nothing else.

Discovery is a pipeline of small functions over entry points (tested by feeding fake
ones): :func:`_entry_points` reads what is installed, :func:`_select` resolves duplicate
names, :func:`_instantiate` loads one. The built-in backends register through the same
group in anyexec's own ``pyproject.toml``; there is no private path.

Only entry points of installed distributions are ever loaded: nothing is imported from a
name given in configuration.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
import threading
import warnings
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from anyexec._record import frozen
from anyexec.contract import Backend
from anyexec.errors import BackendNotFound, BackendUnavailable

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

__all__ = ["GROUP", "BackendInfo", "backends", "core_names", "get", "installed", "names", "refresh"]

GROUP = "anyexec.backends"

#: Backends we know of that live in their own distributions: how to install each, from the
#: package index (the extra pins the backend to this anyexec's version) and from a clone of
#: the repository, where each backend's distribution is a folder under backends/.
KNOWN: dict[str, str] = {
    name: (
        f"pip install 'anyexec[{name}]' (from the package index), "
        f"or pip install -e backends/anyexec-{name} (from a clone of the anyexec repository)"
    )
    for name in ("loky", "dask")
}

_CORE_DIST = "anyexec"


@frozen
class BackendInfo:
    """What ``anyexec.backends()`` reports about one registered backend."""

    name: str
    distribution: str
    version: str
    value: str
    available: bool
    error: str | None = None
    crosses: str | None = None
    description: str = ""


def _dist_of(ep: EntryPoint) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "?", "?"
    return dist.metadata["Name"] or "?", dist.version or "?"


def _entry_points() -> list[Any]:
    """Every installed distribution's backends; only for names the core does not provide.
    Read from the ``entry_points.txt`` files on ``sys.path`` (:func:`_path_entry_points`,
    a few ms); where those might not be all, ``importlib.metadata`` decides, which imports
    ~15 ms of modules and reads every distribution's metadata (35-70 ms for 80-380
    distributions)."""
    found = _path_entry_points()
    if found is not None:
        return found
    from importlib.metadata import entry_points

    return list(entry_points(group=GROUP))


def _normalized(name: str) -> str:
    """A distribution's name as ``importlib.metadata`` compares them (PEP 503)."""
    out = name.lower()
    for sep in ("-", "."):
        out = out.replace(sep, "_")
    while "__" in out:
        out = out.replace("__", "_")
    return out


def _path_entry_points() -> list[Any] | None:
    """This group's entry points of every distribution in a ``.dist-info`` or
    ``.egg-info`` folder on ``sys.path``, as ``importlib.metadata.entry_points`` finds
    them: the first distribution of a name wins (a later one of the same name is shadowed).
    Only each ``entry_points.txt`` is read, and the name and version of a distribution that
    has this group. None where a distribution could hide elsewhere: a ``sys.path`` entry
    that is a file (a zip or an egg) or an import hook that lists distributions of its own.
    """
    for finder in sys.meta_path:
        if hasattr(finder, "find_distributions") and not _reads_sys_path(finder):
            return None
    seen: set[str] = set()
    found: list[Any] = []
    for entry in sys.path:
        folder = entry or os.curdir
        if not isinstance(entry, str):
            return None
        try:
            names = os.listdir(folder)
        except NotADirectoryError:
            return None
        except OSError:  # gone, or not readable: importlib.metadata skips it too
            continue
        for name in names:
            low = name.lower()
            if not low.endswith((".dist-info", ".egg-info")):
                continue
            key = _normalized(name.rpartition(".")[0].partition("-")[0])
            if key in seen:
                continue
            seen.add(key)  # an .egg-info file has no entry points but shadows as well
            info = os.path.join(folder, name)
            if not os.path.isdir(info):
                continue
            try:
                with open(os.path.join(info, "entry_points.txt"), encoding="utf-8") as fh:
                    text = fh.read()
            except OSError:
                continue
            if GROUP in text:
                dist = _FoundDistribution(*_name_and_version(info))
                found.extend(_parse_group(text, GROUP, dist))
    return found


def _reads_sys_path(finder: Any) -> bool:
    """Whether ``finder`` lists only the distributions on ``sys.path``, which
    :func:`_path_entry_points` reads too: the standard library's ``PathFinder``, and the
    ``importlib_metadata`` backport's ``MetadataPathFinder`` (which it adds to
    ``sys.meta_path`` when imported, as dask does)."""
    import importlib.machinery

    kind = finder if isinstance(finder, type) else type(finder)
    return finder is importlib.machinery.PathFinder or (
        kind.__module__.partition(".")[0] == "importlib_metadata"
        and kind.__name__ == "MetadataPathFinder"
    )


def _name_and_version(info: str) -> tuple[str, str]:
    """``Name`` and ``Version`` from a distribution's ``METADATA`` (``PKG-INFO`` in an
    ``.egg-info``): the header lines before the first blank line."""
    fields = {"name": "?", "version": "?"}
    for file in ("METADATA", "PKG-INFO"):
        try:
            with open(os.path.join(info, file), encoding="utf-8") as fh:
                for line in fh:
                    if not line.strip():
                        break
                    key, sep, value = line.partition(":")
                    if sep and key.strip().lower() in fields:
                        fields[key.strip().lower()] = value.strip()
            break
        except OSError:
            continue
    return fields["name"], fields["version"]


class _FoundDistribution:
    """Name and version of a distribution, as ``EntryPoint.dist`` offers them."""

    def __init__(self, name: str, version: str) -> None:
        self.metadata = {"Name": name}
        self.version = version


@frozen
class _OwnEntryPoint:
    """One line of an ``entry_points.txt`` read directly; loads as ``EntryPoint.load``
    does."""

    name: str
    value: str
    group: str
    dist: _FoundDistribution

    def load(self) -> Any:
        module, _, attrs = self.value.partition("[")[0].partition(":")
        obj: Any = importlib.import_module(module.strip())
        for attr in filter(None, attrs.strip().split(".")):
            obj = getattr(obj, attr)
        return obj


def _parse_group(text: str, group: str, dist: _FoundDistribution) -> list[_OwnEntryPoint]:
    """The entries of one ``[group]`` of an ``entry_points.txt`` (an INI file)."""
    found, inside = [], False
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            inside = line[1:-1].strip() == group
        elif inside and "=" in line:
            name, _, value = line.partition("=")
            found.append(_OwnEntryPoint(name.strip(), value.strip(), group, dist))
    return found


def _core_entry_points() -> list[Any]:
    """The backends anyexec's own distribution registers (serial, thread, process,
    asyncio), read from its own metadata alone: no scan of the other distributions, and
    not even the import of ``importlib.metadata`` (~20 ms) where the ``.dist-info`` folder
    of this very version sits on ``sys.path`` (a wheel or editable install). Elsewhere
    (an egg, a zip) ``importlib.metadata.distribution`` finds it; empty when anyexec runs
    without installed metadata, and the full scan decides."""
    from anyexec._dist import own_dist_info

    found = own_dist_info()
    if found is not None:
        folder, version = found
        try:
            with open(os.path.join(folder, "entry_points.txt"), encoding="utf-8") as fh:
                return _parse_group(fh.read(), GROUP, _FoundDistribution(_CORE_DIST, version))
        except OSError:
            pass

    from importlib.metadata import PackageNotFoundError, distribution

    try:
        dist = distribution(_CORE_DIST)
    except PackageNotFoundError:  # pragma: no cover - a source tree without metadata
        return []
    return [ep for ep in dist.entry_points if ep.group == GROUP]


def _select(eps: Iterable[EntryPoint]) -> dict[str, EntryPoint]:
    """One entry point per name. The core's own wins a clash, then the first distribution
    by name; every clash warns and says which one won (never a silent drop)."""
    by_name: dict[str, list[EntryPoint]] = {}
    for ep in eps:
        by_name.setdefault(ep.name, []).append(ep)
    chosen: dict[str, EntryPoint] = {}
    for name, group in sorted(by_name.items()):
        ranked = sorted(group, key=lambda ep: (_dist_of(ep)[0] != _CORE_DIST, _dist_of(ep)[0]))
        chosen[name] = ranked[0]
        dists = {(_dist_of(ep)[0], ep.value) for ep in ranked}
        if len(dists) > 1:
            others = ", ".join(f"{_dist_of(ep)[0]} ({ep.value})" for ep in ranked[1:])
            warnings.warn(
                f"anyexec backend {name!r} is registered more than once; using "
                f"{_dist_of(ranked[0])[0]} ({ranked[0].value}), ignoring {others}",
                RuntimeWarning,
                stacklevel=3,
            )
    return chosen


def _instantiate(name: str, ep: EntryPoint) -> Backend:
    """Load an entry point; it must name a Backend subclass (or instance)."""
    obj: Any = ep.load()
    if isinstance(obj, type) and issubclass(obj, Backend):
        obj = obj()
    if not isinstance(obj, Backend):
        raise TypeError(
            f"entry point {name} = {ep.value!r} must name a subclass of "
            f"anyexec.contract.Backend, not {type(obj).__name__}"
        )
    obj.name = name
    return obj


class _Registry:
    """What is installed, discovered lazily: a core name (the core wins a name clash, see
    :func:`_select`) is found in anyexec's own metadata; every other name, the full list
    (``anyexec.backends()``) and suggestions for a typo scan every distribution, once."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._eps: dict[str, EntryPoint] | None = None
        self._core: dict[str, Any] | None = None
        self._loaded: dict[str, Backend | BaseException] = {}

    def entry_points(self) -> dict[str, EntryPoint]:
        with self._lock:
            if self._eps is None:
                self._eps = _select(_entry_points())
            return self._eps

    def core_entry_points(self) -> dict[str, Any]:
        with self._lock:
            if self._core is None:
                self._core = {ep.name: ep for ep in _core_entry_points()}
            return self._core

    def entry_point(self, name: str) -> Any:
        """``name``'s entry point: the core's own without a scan, else from the full scan."""
        with self._lock:
            if self._eps is None:
                core = self.core_entry_points().get(name)
                if core is not None:
                    return core
            return self.entry_points().get(name)

    def load(self, name: str) -> Backend | BaseException:
        with self._lock:
            if name not in self._loaded:
                ep = self.entry_point(name)
                if ep is None:
                    raise KeyError(name)
                try:
                    self._loaded[name] = _instantiate(name, ep)
                except Exception as exc:  # a broken plugin must not break the others
                    dist, version = _dist_of(ep)
                    warnings.warn(
                        f"anyexec backend {name!r} from {dist} {version} failed to load "
                        f"and is skipped: {type(exc).__name__}: {exc}",
                        RuntimeWarning,
                        stacklevel=4,
                    )
                    self._loaded[name] = exc
            return self._loaded[name]

    def refresh(self) -> None:
        with self._lock:
            self._eps = None
            self._core = None
            self._loaded.clear()


_REGISTRY = _Registry()


def refresh() -> None:
    """Forget what was discovered, so newly installed backends are found."""
    _REGISTRY.refresh()
    _names.cache_clear()


@functools.lru_cache(maxsize=1)
def _names() -> tuple[str, ...]:
    return tuple(sorted(_REGISTRY.entry_points()))


def names() -> tuple[str, ...]:
    """The names of every registered backend (loaded or not), sorted."""
    return _names()


def core_names() -> frozenset[str]:
    """The backends anyexec itself provides, known without scanning other distributions."""
    return frozenset(_REGISTRY.core_entry_points())


def installed(name: str) -> bool:
    """Whether a backend named ``name`` is registered (a core name needs no scan)."""
    return _REGISTRY.entry_point(name) is not None


def backends() -> list[BackendInfo]:
    """Every backend registered under ``anyexec.backends``, loading each to say if it works."""
    out = []
    for name, ep in sorted(_REGISTRY.entry_points().items()):
        dist, version = _dist_of(ep)
        loaded = _REGISTRY.load(name)
        if isinstance(loaded, BaseException):
            out.append(
                BackendInfo(
                    name, dist, version, ep.value, False, f"{type(loaded).__name__}: {loaded}"
                )
            )
        else:
            out.append(
                BackendInfo(
                    name, dist, version, ep.value, True, None, loaded.crosses, loaded.describe()
                )
            )
    return out


def get(name: str) -> Backend:
    """The backend registered as ``name``.

    Raises :class:`BackendUnavailable` when it is known but not installed or fails to load,
    and :class:`BackendNotFound`, listing what is installed, when the name is unknown.
    """
    ep = _REGISTRY.entry_point(name)
    if ep is None:
        eps = _REGISTRY.entry_points()
        installed = ", ".join(sorted(eps)) or "none"
        if name in KNOWN:
            raise BackendUnavailable(
                f"backend {name!r} is not installed. Install it with: {KNOWN[name]}. "
                f"Installed backends: {installed}"
            )
        import difflib  # only for a name that is not installed

        close = difflib.get_close_matches(name, list(eps) + list(KNOWN), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        missing = [f"{k}: {v}" for k, v in sorted(KNOWN.items()) if k not in eps]
        more = f" Not installed but available: {'; '.join(missing)}." if missing else ""
        raise BackendNotFound(
            f"unknown backend {name!r}. Installed backends: {installed}.{hint}{more}"
        )
    loaded = _REGISTRY.load(name)
    if isinstance(loaded, BaseException):
        dist, version = _dist_of(ep)
        hint = KNOWN.get(name, f"reinstall {dist}")
        raise BackendUnavailable(
            f"backend {name!r} (from {dist} {version}) is installed but cannot load: "
            f"{type(loaded).__name__}: {loaded}. Fix: {hint}"
        ) from loaded
    return loaded
