"""Context variables shared by config (who decides) and the task wrappers (inside a worker).

Kept in their own tiny module so that worker processes import almost nothing.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

#: True while a task runs inside an anyexec worker; nested calls then default to serial.
IN_WORKER: ContextVar[bool] = ContextVar("anyexec_in_worker", default=False)

#: The stack of ``anyexec.using(...)`` layers, innermost last.
USING: ContextVar[tuple[Any, ...]] = ContextVar("anyexec_using", default=())
