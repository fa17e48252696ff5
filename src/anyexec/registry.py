"""Finding backends: entry points in the group ``anyexec.backends``, nothing else.

Discovery is a pipeline of small functions over entry points (tested by feeding fake
ones): :func:`_entry_points` reads what is installed, :func:`_select` resolves duplicate
names, :func:`_instantiate` loads one. The built-in backends register through the same
group in anyexec's own ``pyproject.toml``; there is no private path.

Only entry points of installed distributions are ever loaded: nothing is imported from a
name given in configuration.
"""

from __future__ import annotations

import difflib
import functools
import threading
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from anyexec.contract import Backend
from anyexec.errors import BackendNotFound, BackendUnavailable

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

__all__ = ["GROUP", "BackendInfo", "backends", "get", "refresh"]

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


@dataclass(frozen=True)
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


def _entry_points() -> list[EntryPoint]:
    from importlib.metadata import entry_points  # ~40 ms: only when backends are looked up

    return list(entry_points(group=GROUP))


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
    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._eps: dict[str, EntryPoint] | None = None
        self._loaded: dict[str, Backend | BaseException] = {}

    def entry_points(self) -> dict[str, EntryPoint]:
        with self._lock:
            if self._eps is None:
                self._eps = _select(_entry_points())
            return self._eps

    def load(self, name: str) -> Backend | BaseException:
        with self._lock:
            if name not in self._loaded:
                ep = self.entry_points()[name]
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
    eps = _REGISTRY.entry_points()
    if name not in eps:
        installed = ", ".join(sorted(eps)) or "none"
        if name in KNOWN:
            raise BackendUnavailable(
                f"backend {name!r} is not installed. Install it with: {KNOWN[name]}. "
                f"Installed backends: {installed}"
            )
        close = difflib.get_close_matches(name, list(eps) + list(KNOWN), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        missing = [f"{k}: {v}" for k, v in sorted(KNOWN.items()) if k not in eps]
        more = f" Not installed but available: {'; '.join(missing)}." if missing else ""
        raise BackendNotFound(
            f"unknown backend {name!r}. Installed backends: {installed}.{hint}{more}"
        )
    loaded = _REGISTRY.load(name)
    if isinstance(loaded, BaseException):
        dist, version = _dist_of(eps[name])
        hint = KNOWN.get(name, f"reinstall {dist}")
        raise BackendUnavailable(
            f"backend {name!r} (from {dist} {version}) is installed but cannot load: "
            f"{type(loaded).__name__}: {loaded}. Fix: {hint}"
        ) from loaded
    return loaded
