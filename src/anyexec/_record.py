"""Small immutable value classes, without importing :mod:`dataclasses`.

``dataclasses`` imports :mod:`inspect` (and with it ``ast``, ``dis`` and ``enum``), and
``@dataclass`` compiles generated source for every class: together ~10 ms of the first
``anyexec.Executor()``, more than a raw ``ThreadPoolExecutor`` takes to start. The handful of
value classes the core needs on every run (settings, options, map plans) only want what
``@dataclass(frozen=True)`` gives them: an ``__init__`` taking the fields in order or by
name, defaults, a ``repr``, equality and hashing by value, and no assignment afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from typing_extensions import dataclass_transform
else:

    def dataclass_transform(**_: Any) -> Callable[[Any], Any]:
        """Only for type checkers (it tells them :func:`frozen` makes dataclass-like
        classes); ``typing_extensions`` is not a runtime dependency."""
        return lambda decorator: decorator


_T = TypeVar("_T", bound=type)
_MISSING = object()


class FrozenInstanceError(AttributeError):
    """Raised on assignment to a field of a frozen record (as ``dataclasses`` does)."""


class _Factory:
    def __init__(self, make: Callable[[], Any]) -> None:
        self.make = make


def field(*, default_factory: Callable[[], Any]) -> Any:
    """A default made fresh for each instance, as ``dataclasses.field(default_factory=...)``:
    ``options: dict[str, Any] = field(default_factory=dict)``."""
    return _Factory(default_factory)


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def frozen(cls: _T) -> _T:
    """Make ``cls`` an immutable record of its annotated fields (in declaration order).

    A class attribute with the field's name is its default (a :func:`field` default
    factory is called for each instance). Every annotation is a field: ``ClassVar`` is not
    recognised.
    """
    # The class's own annotations (inspect.get_annotations would import inspect, which is
    # what this module avoids); under ``from __future__ import annotations`` they are strings.
    names = tuple(cls.__dict__.get("__annotations__", {}))  # noqa: RUF063
    defaults = {n: cls.__dict__[n] for n in names if n in cls.__dict__}
    seen_default = False
    for n in names:
        if n in defaults:
            seen_default = True
        elif seen_default:
            raise TypeError(f"{cls.__name__}: field {n!r} without a default follows one with")
    for n in defaults:
        delattr(cls, n)  # instances hold every field; the class keeps none
    qualname = cls.__qualname__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if len(args) > len(names):
            raise TypeError(
                f"{qualname}() takes {len(names)} positional arguments but {len(args)} were given"
            )
        values = dict(zip(names, args))
        for key, value in kwargs.items():
            if key not in names:
                raise TypeError(f"{qualname}() got an unexpected keyword argument {key!r}")
            if key in values:
                raise TypeError(f"{qualname}() got multiple values for argument {key!r}")
            values[key] = value
        for n in names:
            if n not in values:
                default = defaults.get(n, _MISSING)
                if default is _MISSING:
                    raise TypeError(f"{qualname}() missing required argument: {n!r}")
                values[n] = default.make() if isinstance(default, _Factory) else default
            object.__setattr__(self, n, values[n])

    def _values(self: Any) -> tuple[Any, ...]:
        return tuple(getattr(self, n) for n in names)

    def __repr__(self: Any) -> str:
        inner = ", ".join(f"{n}={getattr(self, n)!r}" for n in names)
        return f"{type(self).__qualname__}({inner})"

    def __eq__(self: Any, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return _values(self) == _values(other)

    def __hash__(self: Any) -> int:
        return hash(_values(self))

    def __setattr__(self: Any, name: str, value: Any) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self: Any, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    for fn in (__init__, __repr__, __eq__, __hash__, __setattr__, __delattr__):
        fn.__qualname__ = f"{qualname}.{fn.__name__}"
        setattr(cls, fn.__name__, fn)
    setattr(cls, "__match_args__", names)  # noqa: B010  (mypy: a type has no such attribute)
    return cls
