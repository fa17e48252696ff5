"""A small pipeline. score_all() is library code: it calls anyexec.map and names no backend,
so whoever runs the script picks one, e.g. ANYEXEC_BACKEND=process python pipeline.py."""

import time

import anyexec


def score(seed: int) -> int:
    """The work: pure-Python arithmetic, about 10 ms a call (it holds the GIL)."""
    x = seed
    for i in range(150_000):
        x = (x * 1103515245 + i) % 2**31
    return x % 1000


def score_all(seeds: range) -> list[int]:
    return list(anyexec.map(score, seeds))


if __name__ == "__main__":
    start = time.perf_counter()
    scores = score_all(range(48))
    took = time.perf_counter() - start
    print(f"{anyexec.current().backend}: sum {sum(scores)}, best {max(scores)} in {took:.2f} s")
