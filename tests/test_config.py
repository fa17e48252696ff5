"""Who decides the backend, layer by layer, and the errors for bad values."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

import anyexec
from anyexec import config


def write(path: Path, text: str) -> None:
    path.write_text(text)
    config.clear_cache()


def test_default_is_thread_with_one_worker_per_cpu() -> None:
    s = config.resolve()
    assert s.name == "thread"
    assert s.workers == config.available_cpus()
    assert s.sources["backend"] == "default"


def test_pyproject_table(tmp_path: Path) -> None:
    write(Path("pyproject.toml"), '[tool.anyexec]\nbackend = "process"\nworkers = 3\n')
    s = config.resolve()
    assert (s.name, s.workers) == ("process", 3)
    assert "pyproject.toml [tool.anyexec]" in s.sources["backend"]


def test_anyexec_toml_found_from_a_parent_folder() -> None:
    write(Path("anyexec.toml"), 'backend = "serial"\n')
    deeper = Path("a/b")
    deeper.mkdir(parents=True)
    s = config.resolve(cwd=deeper)
    assert s.name == "serial"


def test_environment_beats_file(monkeypatch: pytest.MonkeyPatch) -> None:
    write(Path("pyproject.toml"), '[tool.anyexec]\nbackend = "process"\nworkers = 3\n')
    monkeypatch.setenv("ANYEXEC_BACKEND", "serial")
    monkeypatch.setenv("ANYEXEC_WORKERS", "5")
    s = config.resolve()
    assert s.name == "serial" and s.sources["backend"] == "environment variable ANYEXEC_BACKEND"
    s = config.resolve(backend="thread")
    assert s.workers == 5 and "ANYEXEC_WORKERS" in s.sources["workers"]


def test_using_beats_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANYEXEC_BACKEND", "serial")
    with anyexec.using("thread", workers=2) as ex:
        assert (ex.backend, ex.workers) == ("thread", 2)
        with anyexec.using(workers=3):  # nested: inner wins value by value
            s = config.resolve()
            assert (s.name, s.workers) == ("thread", 3)
        assert config.resolve().workers == 2
    assert config.resolve().name == "serial"


def test_argument_beats_using() -> None:
    with anyexec.using("serial"):
        assert anyexec.Executor("thread", workers=1).backend == "thread"
        assert anyexec.Executor().backend == "serial"


def test_profiles(monkeypatch: pytest.MonkeyPatch) -> None:
    write(
        Path("pyproject.toml"),
        '[tool.anyexec]\nbackend = "thread"\nworkers = 2\n'
        '[tool.anyexec.profiles.heavy]\nbackend = "process"\nworkers = 4\n',
    )
    assert config.resolve().name == "thread"
    monkeypatch.setenv("ANYEXEC_PROFILE", "heavy")
    s = config.resolve()
    assert (s.name, s.workers) == ("process", 4)
    assert "profile 'heavy'" in s.sources["backend"]
    monkeypatch.setenv("ANYEXEC_PROFILE", "nope")
    with pytest.raises(anyexec.ConfigError, match=r"ANYEXEC_PROFILE='nope'.*profiles: heavy"):
        config.resolve()


def test_profile_without_a_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANYEXEC_PROFILE", "x")
    with pytest.raises(anyexec.ConfigError, match=r"no anyexec\.toml"):
        config.resolve()


def test_backend_option_tables_apply_only_to_their_backend() -> None:
    write(
        Path("pyproject.toml"),
        '[tool.anyexec]\nbackend = "thread"\n[tool.anyexec.thread]\nthread_name_prefix = "t"\n'
        '[tool.anyexec.process]\nmp_context = "spawn"\n',
    )
    assert config.resolve().options == {"thread_name_prefix": "t"}
    assert config.resolve(backend="process").options == {"mp_context": "spawn"}


def test_backend_option_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANYEXEC_PROCESS_MP_CONTEXT", "spawn")
    s = config.resolve(backend="process")
    assert s.options == {"mp_context": "spawn"}
    assert s.sources["option mp_context"].startswith("environment variable ANYEXEC_PROCESS")


def test_options_from_several_layers_merge() -> None:
    write(Path("anyexec.toml"), '[process]\nmp_context = "spawn"\n')
    with anyexec.using("process", max_tasks_per_child=5):
        assert config.resolve().options == {"mp_context": "spawn", "max_tasks_per_child": 5}


def test_using_is_isolated_per_thread() -> None:
    seen: dict[str, str] = {}

    def other() -> None:
        seen["other"] = config.resolve().name

    with anyexec.using("serial"):
        t = threading.Thread(target=other)
        t.start()
        t.join()
        seen["main"] = config.resolve().name
    assert seen == {"other": "thread", "main": "serial"}


def test_using_is_isolated_per_async_task() -> None:
    async def pick(name: str, delay: float) -> str:
        with anyexec.using(name):
            await asyncio.sleep(delay)
            return config.resolve().name

    async def main() -> list[str]:
        return list(await asyncio.gather(pick("serial", 0.05), pick("process", 0.01)))

    assert asyncio.run(main()) == ["serial", "process"]


def test_current_is_shared_per_configuration() -> None:
    a = anyexec.current()
    assert anyexec.current() is a
    with anyexec.using("serial"):
        b = anyexec.current()
        assert b is not a and b.backend == "serial"
    assert anyexec.current() is a
    assert list(anyexec.map(abs, [-1, 2])) == [1, 2]
    assert anyexec.submit(abs, -4).result() == 4


# -- bad input --------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [0, "abc", 1.5, True, "1_0", "-"])
def test_bad_workers_argument(bad: object) -> None:
    with pytest.raises(anyexec.ConfigError, match=r"argument: workers"):
        anyexec.Executor("thread", workers=bad)  # type: ignore[arg-type]


def test_bad_workers_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANYEXEC_WORKERS", "abc")
    with pytest.raises(anyexec.ConfigError, match=r"ANYEXEC_WORKERS='abc'.*positive integer"):
        anyexec.Executor()


def test_workers_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANYEXEC_WORKERS", "auto")
    assert anyexec.Executor("thread").workers == config.available_cpus()


def test_unknown_backend_lists_the_installed_ones() -> None:
    with pytest.raises(
        anyexec.BackendNotFound,
        match=r"unknown backend 'thraed'.*Installed backends: .*serial.*Did you mean 'thread'",
    ):
        anyexec.Executor("thraed")


def test_unknown_backend_from_environment_names_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ANYEXEC_BACKEND", "nope")
    with pytest.raises(anyexec.BackendNotFound, match="ANYEXEC_BACKEND"):
        anyexec.current()


def test_backend_not_a_string() -> None:
    with pytest.raises(anyexec.ConfigError, match="backend must be a backend name"):
        anyexec.Executor(42)  # type: ignore[arg-type]


def test_option_the_backend_does_not_take() -> None:
    with pytest.raises(
        anyexec.ConfigError,
        match=r"backend 'thread' does not take option 'address'.*thread_name_prefix",
    ):
        anyexec.Executor("thread", address="tcp://x:1")


def test_option_of_the_wrong_type() -> None:
    with pytest.raises(anyexec.ConfigError, match=r"option 'max_tasks_per_child' expects int"):
        anyexec.Executor("process", max_tasks_per_child="many")


def test_option_choice() -> None:
    with pytest.raises(anyexec.ConfigError, match=r"mp_context.*must be one of"):
        anyexec.Executor("process", mp_context="teleport")


def test_malformed_config_file() -> None:
    write(Path("pyproject.toml"), "[tool.anyexec\nbackend = \n")
    with pytest.raises(anyexec.ConfigError, match=r"pyproject.toml: not valid TOML"):
        anyexec.Executor()


def test_unknown_key_in_config_file() -> None:
    write(Path("anyexec.toml"), 'backnd = "thread"\n')
    with pytest.raises(anyexec.ConfigError, match=r"anyexec.toml: unknown key 'backnd'"):
        anyexec.Executor()


def test_bad_workers_in_config_file() -> None:
    write(Path("pyproject.toml"), '[tool.anyexec]\nworkers = "lots"\n')
    with pytest.raises(anyexec.ConfigError, match=r"pyproject.toml \[tool.anyexec\]: workers"):
        anyexec.Executor()


def test_using_reports_errors_at_entry() -> None:
    with pytest.raises(anyexec.ConfigError, match=r"using\(workers=0\): workers"):
        with anyexec.using(workers=0):
            pass  # pragma: no cover


def test_known_but_missing_backend_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from anyexec import registry

    monkeypatch.setattr(registry, "KNOWN", {**registry.KNOWN, "warp": "pip install anyexec-warp"})
    with pytest.raises(anyexec.BackendUnavailable, match="pip install anyexec-warp"):
        anyexec.Executor("warp")


def test_bad_chunksize_and_buffersize() -> None:
    ex = anyexec.Executor("serial")
    with pytest.raises(anyexec.ConfigError, match=r"chunksize=0"):
        ex.map(abs, [1], chunksize=0)
    with pytest.raises(anyexec.ConfigError, match="buffersize=-2"):
        ex.map(abs, [1], buffersize=-2)
