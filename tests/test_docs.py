"""The complete backend in docs/writing-a-backend.md runs as printed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import anyexec
from anyexec.testing import tasks

DOC = Path(__file__).parent.parent / "docs" / "writing-a-backend.md"


def test_the_documented_backend_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code = re.search(r"```python\n(# nice_backend\.py\n.*?)```", DOC.read_text(), re.S)
    assert code, "the example is missing from docs/writing-a-backend.md"
    assert len(code.group(1).splitlines()) <= 35  # "about 30 lines"
    (tmp_path / "nice_backend.py").write_text(code.group(1))
    monkeypatch.syspath_prepend(str(tmp_path))
    import nice_backend

    with anyexec.Executor(nice_backend.NicePoolBackend(), workers=2, niceness=1) as ex:
        assert list(ex.map(tasks.square, range(20))) == [x * x for x in range(20)]
        assert ex.submit(tasks.add, 1, z=2).result(timeout=60) == 3
    with pytest.raises(anyexec.ConfigError, match="niceness"):
        anyexec.Executor(nice_backend.NicePoolBackend(), niceness="very")
