"""The combiner that lets the worker's threads share model calls (workers/combiner.py)."""

from __future__ import annotations

import threading
import time

import pytest

from workers.combiner import Combiner


def test_waiting_callers_join_one_call_and_get_their_own_results():
    calls: list[list[int]] = []
    gate = threading.Event()

    def square(items: list[int]) -> list[int]:
        calls.append(list(items))
        if len(calls) == 1:
            gate.wait(5)  # hold the first call while the others queue up
        return [i * i for i in items]

    combine = Combiner(square, max_items=100)
    results: dict[int, list[int]] = {}

    def call(n: int) -> None:
        results[n] = combine([n, n + 1000])

    first = threading.Thread(target=call, args=(0,))
    first.start()
    while not calls:
        time.sleep(0.001)
    others = [threading.Thread(target=call, args=(n,)) for n in range(1, 6)]
    for t in others:
        t.start()
    time.sleep(0.2)  # the five are now waiting for the first call to end
    gate.set()
    for t in [first, *others]:
        t.join(5)
    assert len(calls) == 2 and sorted(calls[1]) == sorted(x for n in range(1, 6) for x in (n, n + 1000))
    assert results == {n: [n * n, (n + 1000) ** 2] for n in range(6)}


def test_max_items_splits_calls_without_splitting_a_caller():
    sizes: list[int] = []
    gate = threading.Event()

    def ident(items: list[int]) -> list[int]:
        sizes.append(len(items))
        if len(sizes) == 1:
            gate.wait(5)
        return items

    combine = Combiner(ident, max_items=5)
    threads = [threading.Thread(target=combine, args=([n] * 3,)) for n in range(5)]
    threads[0].start()
    while not sizes:
        time.sleep(0.001)
    for t in threads[1:]:
        t.start()
    time.sleep(0.2)
    gate.set()
    for t in threads:
        t.join(5)
    assert sum(sizes) == 15 and all(s <= 5 and s % 3 == 0 for s in sizes)  # never more, never a caller cut in two


def test_an_error_reaches_every_caller_of_the_failed_call_and_the_next_call_works():
    fail = threading.Event()
    fail.set()

    def fragile(items: list[str]) -> list[str]:
        if fail.is_set():
            raise ValueError("model exploded")
        return [s.upper() for s in items]

    combine = Combiner(fragile)
    with pytest.raises(ValueError, match="model exploded"):
        combine(["a"])
    fail.clear()
    assert combine(["a", "b"]) == ["A", "B"]
    assert combine([]) == []


def test_a_function_that_returns_the_wrong_number_of_results_is_an_error():
    combine = Combiner(lambda items: items[:-1])
    with pytest.raises(RuntimeError, match="2 results for 3 items"):
        combine([1, 2, 3])
