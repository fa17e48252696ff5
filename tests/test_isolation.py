"""The core never imports a plugin's dependencies."""

from __future__ import annotations

import subprocess
import sys


def test_core_imports_no_plugin_dependencies() -> None:
    code = (
        "import sys, anyexec\n"
        "from anyexec.testing import tasks\n"
        "for b in ('serial', 'thread', 'process', 'asyncio'):\n"
        "    with anyexec.Executor(b, workers=1) as ex:\n"
        "        assert list(ex.map(tasks.square, range(3))) == [0, 1, 4]\n"
        "import anyexec.measure, anyexec.bench, anyexec.cli\n"
        "bad = sorted(m for m in ('loky', 'dask', 'distributed', 'cloudpickle') if m in sys.modules)\n"
        "assert not bad, bad\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def _worker_imports() -> dict[str, set[str]]:
    """Each module of anyexec._worker and the anyexec modules it imports at module level."""
    import ast
    from pathlib import Path

    import anyexec._worker

    folder = Path(anyexec._worker.__file__).parent
    graph: dict[str, set[str]] = {}
    for path in sorted(folder.glob("*.py")):
        name = "anyexec._worker" + ("" if path.stem == "__init__" else f".{path.stem}")
        found: set[str] = set()
        for node in ast.parse(path.read_text()).body:  # module level only
            if isinstance(node, ast.ImportFrom) and node.module:
                mod = node.module
                found |= {
                    f"{mod}.{a.name}" if mod == "anyexec._worker" else mod for a in node.names
                }
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
        graph[name] = found
    return graph


def test_worker_package_imports_only_the_standard_library() -> None:
    allowed_ours = {"anyexec.errors"}
    for module, imports in _worker_imports().items():
        for imported in imports:
            top = imported.split(".")[0]
            if imported.startswith("anyexec._worker") or imported in allowed_ours:
                continue
            assert top != "anyexec", f"{module} imports {imported} at module level"
            assert top in sys.stdlib_module_names or top == "__future__", (
                f"{module} imports the third-party module {imported} at module level"
            )


def test_worker_package_has_no_import_cycle() -> None:
    graph = {
        m: {i for i in deps if i.startswith("anyexec._worker.")}
        for m, deps in _worker_imports().items()
    }

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, f"import cycle: {' -> '.join((*path, module))}"
        for dep in graph.get(module, ()):
            visit(dep, (*path, module))

    for module in graph:
        visit(module, ())
