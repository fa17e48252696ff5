"""Failure capture in the worker: a task's exception kept at its position, and made able to
travel back to the caller (through pickle) without breaking the pool."""

from __future__ import annotations

import pickle
import traceback

from anyexec.errors import RemoteTraceback, UnpicklableError

__all__ = ["Failure", "portable"]


def _round_trips(exc: BaseException) -> Exception | None:
    """Return why ``exc`` cannot be sent back through pickle, or None if it can."""
    try:
        pickle.loads(pickle.dumps(exc))
        return None
    except Exception as plain_error:
        try:  # loky and dask send exceptions with cloudpickle
            import cloudpickle

            pickle.loads(cloudpickle.dumps(exc))
            return None
        except Exception:
            return plain_error


def portable(exc: Exception) -> Exception:
    why = _round_trips(exc)
    if why is None:
        return exc
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return UnpicklableError(
        f"the task raised {type(exc).__module__}.{type(exc).__qualname__}: {exc}; that "
        f"exception cannot be sent back from the worker ({type(why).__name__}: {why}). "
        f"Make it picklable (pass every __init__ argument to super().__init__). "
        f"Original traceback:\n{tb}"
    )


class Failure:
    """A task's exception, kept in a chunk's outcomes at the task's position."""

    __slots__ = ("exc", "tb")

    def __init__(self, exc: Exception, tb: str | None) -> None:
        self.exc = exc
        self.tb = tb

    @classmethod
    def capture(cls, exc: Exception, crossing: bool) -> Failure:
        if not crossing:
            return cls(exc, None)
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        return cls(portable(exc), tb)

    def exception(self) -> Exception:
        """The task's exception, with the worker's traceback attached as its cause."""
        exc = self.exc
        if self.tb is not None and exc.__cause__ is None:
            exc.__cause__ = RemoteTraceback('\n"""\n' + self.tb + '"""')
        return exc

    def reraise(self) -> None:
        raise self.exception()
