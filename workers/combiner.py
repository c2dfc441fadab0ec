"""One model call at a time, and every caller that waited joins the next one.

celery-batches groups the ``annotate`` requests that arrive within its flush
interval, but the worker's threads run several such batches at once, and on
CPU two model calls at the same time only fight over the cores: under load the
batches stay small and each one is slow. A :class:`Combiner` puts the callers'
items in one shared list; whoever holds the lock runs the function on
everything waiting (up to ``max_items``) and hands each caller its own results.
An idle worker still answers one message at once; a busy one makes bigger,
cheaper batches by itself.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class _Ticket(Generic[T, R]):
    __slots__ = ("items", "results", "error", "done")

    def __init__(self, items: Sequence[T]):
        self.items = items
        self.results: list[R] | None = None
        self.error: BaseException | None = None
        self.done = False


class Combiner(Generic[T, R]):
    def __init__(self, fn: Callable[[list[T]], list[R]], max_items: int = 128):
        self._fn = fn
        self._max = max_items
        self._cond = threading.Condition()
        self._running = False
        self._waiting: list[_Ticket[T, R]] = []

    def __call__(self, items: Sequence[T]) -> list[R]:
        """``fn(items)``, possibly computed together with other threads' items."""
        if not items:
            return []
        ticket: _Ticket[T, R] = _Ticket(items)
        with self._cond:
            self._waiting.append(ticket)
        while True:
            with self._cond:
                while self._running and not ticket.done:
                    self._cond.wait()
                if ticket.done:
                    break
                self._running = True
                tickets = self._take()
            try:
                self._run(tickets)
            finally:
                with self._cond:
                    self._running = False
                    self._cond.notify_all()
        if ticket.error is not None:
            raise ticket.error
        assert ticket.results is not None
        return ticket.results

    def _take(self) -> list[_Ticket[T, R]]:
        """The oldest waiting tickets, whole, up to ``max_items`` items (at least one ticket)."""
        take, n = 0, 0
        for t in self._waiting:
            if take and n + len(t.items) > self._max:
                break
            take, n = take + 1, n + len(t.items)
        tickets, self._waiting = self._waiting[:take], self._waiting[take:]
        return tickets

    def _run(self, tickets: list[_Ticket[T, R]]) -> None:
        flat = [item for t in tickets for item in t.items]
        try:
            out = self._fn(flat)
            if len(out) != len(flat):
                raise RuntimeError(f"combined function returned {len(out)} results for {len(flat)} items")
        except Exception as exc:  # noqa: BLE001 - every caller in the batch gets the error
            for t in tickets:
                t.error, t.done = exc, True
            return
        start = 0
        for t in tickets:
            t.results, t.done = out[start : start + len(t.items)], True
            start += len(t.items)
