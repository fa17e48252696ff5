"""``anyexec.Args``: one item of ``starmap`` that carries keyword arguments."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

__all__ = ["ARGS", "SINGLE", "STAR", "Args", "remap", "values"]


class Args:
    """The arguments of one call, positional and keyword: ``Args(x, scale=2)``.

    ``ex.starmap(f, [Args(1, k=2), Args(3, k=4)])`` calls ``f(1, k=2)`` and ``f(3, k=4)``,
    as joblib's ``delayed(f)(1, k=2)`` does; plain tuples in the same iterable are
    positional arguments only.
    """

    __slots__ = ("args", "kwargs")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        self.kwargs = kwargs

    def __getstate__(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        return self.args, self.kwargs

    def __setstate__(self, state: tuple[tuple[Any, ...], dict[str, Any]]) -> None:
        self.args, self.kwargs = state

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Args):
            return NotImplemented
        return self.args == other.args and self.kwargs == other.kwargs

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        parts = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"Args({', '.join(parts)})"


#: How a chunk passes its items (see ``anyexec._worker.tasks``).
ARGS, SINGLE, STAR = 0, 1, 2


def values(items: Iterable[Any], mode: int) -> Iterator[Any]:
    """Every argument value of every item, whatever the mode (to find large arrays)."""
    for item in items:
        if mode == SINGLE:
            yield item
        elif type(item) is Args:
            yield from item.args
            yield from item.kwargs.values()
        else:
            yield from item


def remap(items: Iterable[Any], mode: int, f: Callable[[Any], Any]) -> list[Any]:
    """The items with every argument value ``v`` replaced by ``f(v)``, shapes kept."""
    if mode == SINGLE:
        return [f(item) for item in items]
    return [
        Args(*map(f, item.args), **{k: f(v) for k, v in item.kwargs.items()})
        if type(item) is Args
        else tuple(map(f, item))
        for item in items
    ]
