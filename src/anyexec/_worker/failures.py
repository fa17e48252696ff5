"""Failure capture in the worker: a task's exception kept at its position, and made able to
travel back to the caller (through pickle) without breaking the pool."""

from __future__ import annotations

import traceback

from anyexec.errors import RemoteTraceback, TaskAborted, UnpicklableError

__all__ = ["Failure", "aborted", "portable", "unsendable_result"]


def _round_trips(exc: BaseException) -> Exception | None:
    """Return why ``exc`` cannot be sent back through pickle, or None if it can."""
    import pickle  # here: only a failed task needs it, and most maps have none

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


def aborted(exc: BaseException) -> TaskAborted:
    """A task's ``SystemExit``, ``KeyboardInterrupt``, ``GeneratorExit`` (or another
    ``BaseException`` that is not an ``Exception``) as that task's outcome."""
    detail = f": {exc}" if str(exc) else ""
    return TaskAborted(
        f"the task raised {type(exc).__name__}{detail}, which would stop a worker or the "
        f"program; anyexec kept it as this task's outcome (the original is the __cause__)",
        exc,
    )


def unsendable_result(value: object, why: BaseException) -> UnpicklableError:
    """The error that stands for a task's result that cannot be sent back from a worker."""
    kind = f"{type(value).__module__}.{type(value).__qualname__}"
    return UnpicklableError(
        f"the task's result, a {kind} object, cannot be sent back from the worker "
        f"({type(why).__name__}: {why}); return something picklable instead"
    )


def portable(exc: Exception) -> Exception:
    """``exc``, or a stand-in where it cannot travel back through pickle."""
    why = _round_trips(exc)
    if why is None:
        return exc
    if isinstance(exc, TaskAborted) and exc.original is not None:
        # The error itself travels; only its original (say a local BaseException
        # subclass) does not: keep the message, drop the original.
        return portable(TaskAborted(str(exc), None))
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
        """The task's exception, with the worker's traceback attached as its cause (or as
        the cause of the original that an anyexec error stands for)."""
        exc = self.exc
        if self.tb is not None:
            original = getattr(exc, "original", None)
            holder = original if isinstance(original, BaseException) else exc
            if holder.__cause__ is None:
                holder.__cause__ = RemoteTraceback('\n"""\n' + self.tb + '"""')
        return exc

    def reraise(self) -> None:
        raise self.exception()
