"""The map engine: correctness across chunk sizes (hypothesis), adaptive sizing on
constructed durations, bounded input, and the progress bar."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import anyexec
from anyexec._chunking import GROWTH, MAX_CHUNK, ChunkSizer
from anyexec.testing import tasks


@pytest.fixture(scope="module")
def thread_ex():  # type: ignore[no-untyped-def]
    with anyexec.Executor("thread", workers=3) as ex:
        yield ex


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    items=st.lists(st.integers(-1000, 1000), max_size=300),
    chunksize=st.one_of(st.just("auto"), st.integers(1, 50)),
    ordered=st.booleans(),
    buffersize=st.one_of(st.just("auto"), st.none(), st.integers(1, 8)),
)
def test_results_equal_a_plain_loop(thread_ex, items, chunksize, ordered, buffersize) -> None:  # type: ignore[no-untyped-def]
    got = list(
        thread_ex.map(
            tasks.square, items, chunksize=chunksize, ordered=ordered, buffersize=buffersize
        )
    )
    want = [x * x for x in items]
    assert (got if ordered else sorted(got)) == (want if ordered else sorted(want))


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(items=st.lists(st.integers(0, 20), min_size=1, max_size=80), chunksize=st.integers(1, 9))
def test_failure_position_is_exact(thread_ex, items, chunksize) -> None:  # type: ignore[no-untyped-def]
    bad = 3
    it = thread_ex.map(tasks.fail_on, items, chunksize=chunksize)
    expected_before = list(itertools.takewhile(lambda x: x != bad, items))
    got = []
    if bad in items:
        with pytest.raises(tasks.TaskError):
            for x in it:
                got.append(x)
        assert got == expected_before
    else:
        assert list(it) == items


def test_sizer_fixed() -> None:
    s = ChunkSizer(7, workers=2, target=0.02, total=100)
    assert [s.next_size() for _ in range(3)] == [7, 7, 7]
    s.observe(7, 10.0)
    assert s.next_size() == 7


def test_sizer_grows_towards_the_target_for_fast_tasks() -> None:
    s = ChunkSizer(None, workers=2, target=0.02, total=None)
    assert s.next_size() == 1
    s.observe(1, 1e-6)  # 1 µs per task: ideal is 20,000 per chunk
    assert s.size == GROWTH  # grows by at most GROWTH× per observation
    for _ in range(5):
        s.observe(s.size, s.size * 1e-6)
    assert s.size == MAX_CHUNK  # bounded


def test_sizer_shrinks_at_once_for_slow_tasks() -> None:
    s = ChunkSizer(None, workers=2, target=0.02, total=None)
    s.size = 1000
    s.observe(1000, 10.0)  # 10 ms per task
    assert s.size == 2  # 20 ms target / 10 ms


def test_sizer_keeps_the_tail_balanced() -> None:
    s = ChunkSizer(None, workers=2, target=0.02, total=64)
    s.per_item = 0.018  # 18 ms tasks: balance matters
    s.size = 50
    assert s.next_size() == 8  # 64 remaining / (4 × 2 workers)
    t = ChunkSizer(None, workers=2, target=0.02, total=10_000)
    t.per_item, t.size = 1e-7, 8192  # tiny tasks: no point splitting finer than target/4
    assert t.next_size() == 8192


def test_infinite_input_is_read_lazily(thread_ex) -> None:  # type: ignore[no-untyped-def]
    consumed = itertools.count()
    seen = []

    def source():  # type: ignore[no-untyped-def]
        for x in consumed:
            seen.append(x)
            yield x

    it = thread_ex.map(tasks.identity, source(), chunksize=10, buffersize=4)
    assert [next(it) for _ in range(5)] == [0, 1, 2, 3, 4]
    assert len(seen) <= 10 * 5 + 10  # at most buffersize + 1 chunks read ahead
    it.close()


def test_progress_bar_counts_tasks(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("tqdm")
    with anyexec.Executor("thread", workers=2) as ex:
        assert len(list(ex.map(tasks.identity, range(1234), progress="squares"))) == 1234
    err = capsys.readouterr().err
    assert "squares" in err and "1234/1234" in err


def test_progress_without_tqdm_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    with pytest.raises(ImportError, match=r"pip install 'anyexec\[progress\]'"):
        anyexec.Executor("serial").map(abs, [1], progress=True)
