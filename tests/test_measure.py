"""The measurement formulas on constructed timings, and the JSON schema."""

from __future__ import annotations

import json

import pytest

import anyexec
from anyexec import measure as m
from anyexec.testing import tasks


def make(ts: float, tp: float, p: int, n: int) -> m.Measurement:
    return m.Measurement(
        "thread", p, "x", n, [ts, ts * 1.1, ts * 0.9], [tp, tp * 1.2, tp * 0.8], 0.1
    )


def test_formulas_on_constructed_timings() -> None:
    x = make(ts=8.0, tp=2.5, p=4, n=100)
    assert x.ts == 8.0 and x.tp == 2.5  # medians
    assert x.speedup == pytest.approx(3.2)
    assert x.efficiency == pytest.approx(0.8)
    assert x.throughput == pytest.approx(40.0)
    assert x.overhead_per_task == pytest.approx((4 * 2.5 - 8.0) / 100)
    assert x.karp_flatt == pytest.approx((1 / 3.2 - 1 / 4) / (1 - 1 / 4))


def test_perfect_and_serial_cases() -> None:
    perfect = make(ts=4.0, tp=1.0, p=4, n=10)
    assert perfect.karp_flatt == pytest.approx(0.0)
    assert perfect.overhead_per_task == pytest.approx(0.0)
    assert make(ts=1.0, tp=1.0, p=1, n=10).karp_flatt is None
    fully_serial = make(ts=2.0, tp=2.0, p=2, n=10)
    assert fully_serial.karp_flatt == pytest.approx(1.0)


def test_json_schema_round_trip() -> None:
    x = make(ts=8.0, tp=2.5, p=4, n=100)
    data = json.loads(x.to_json())
    assert data["schema"] == m.SCHEMA == "anyexec.measurement/1"
    assert set(data) >= {
        "backend",
        "workers",
        "workload",
        "tasks",
        "serial_times",
        "parallel_times",
        "startup",
        "results_match",
        "summary",
    }
    assert set(data["summary"]) == {
        "ts_median",
        "ts_min",
        "ts_max",
        "tp_median",
        "tp_min",
        "tp_max",
        "speedup",
        "efficiency",
        "throughput",
        "overhead_per_task",
        "karp_flatt",
    }
    assert data["summary"]["speedup"] == pytest.approx(3.2)
    again = m.Measurement.from_dict(data)
    assert again.speedup == pytest.approx(3.2)
    with pytest.raises(ValueError, match="schema"):
        m.Measurement.from_dict({**data, "schema": "other/9"})


def test_measure_sleep_workload_speeds_up() -> None:
    res = anyexec.measure.measure(
        tasks.sleep_for, range(16), backend="thread", workers=4, repeat=2, chunksize=1
    )
    assert res.results_match
    assert res.speedup == pytest.approx(res.ts / res.tp)
    assert res.efficiency == pytest.approx(res.speedup / 4)
    assert res.speedup > 1.5  # 16 sleeps of 50 ms on 4 threads; ideal is 4


def test_measure_reports_a_mismatch() -> None:
    from anyexec.builtin.thread import ThreadBackend

    class Tampering(ThreadBackend):
        def submit_batch(self, executor, calls):  # type: ignore[no-untyped-def]
            futs = super().submit_batch(executor, calls)
            out = []
            for f in futs:
                g: object = __import__("concurrent.futures").futures.Future()
                f.add_done_callback(
                    lambda f, g=g: g.set_result(([*f.result()[0][:-1], -1], 0.0, False))
                )  # type: ignore[attr-defined]
                out.append(g)
            return out

    res = m.measure(tasks.square, range(5), backend=Tampering(), workers=1, repeat=1, chunksize=5)
    assert not res.results_match and "result 4 differs" in (res.mismatch or "")
