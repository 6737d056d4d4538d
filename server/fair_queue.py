"""The queued work of one model, taken in turns: a request's sentences are several work items,
and the queue gives the first item of every turn, then the second of every turn, and so on,
starting from the turn served longest ago. A turn is a unary request, or a whole stream (its
requests share one, so a stream of a thousand requests weighs as one client, not a thousand). So a
light request waits for about one item of each turn ahead of it, not for all of a heavy one."""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Hashable, Iterator
from typing import Generic, Protocol, TypeVar


class QueuedWork(Protocol):
    @property
    def turn(self) -> Hashable: ...

    @property
    def rows(self) -> int: ...


Item = TypeVar("Item", bound=QueuedWork)


class FairQueue(Generic[Item]):
    def __init__(self) -> None:
        # turn -> its queued items in order; a turn moves to the end when an item of it is taken
        self._turns: OrderedDict[Hashable, deque[Item]] = OrderedDict()
        self.rows = 0  # decoder rows of everything queued (a sentence with beam k is k rows)

    def add(self, items: list[Item]) -> None:
        """Items of one request, in order, after everything queued of their turn."""
        for item in items:
            self._turns.setdefault(item.turn, deque()).append(item)
            self.rows += item.rows

    def __iter__(self) -> Iterator[Item]:
        return (item for _, item in self.in_rounds())

    def in_rounds(self) -> Iterator[tuple[int, Item]]:
        """Round-robin order, each item with its round: one item of each turn per round."""
        queues = list(self._turns.values())
        depth = 0
        while queues:
            for queue in queues:
                yield depth, queue[depth]
            depth += 1
            queues = [queue for queue in queues if len(queue) > depth]

    def __bool__(self) -> bool:
        return bool(self._turns)

    def __contains__(self, item: Item) -> bool:
        return item in self._turns.get(item.turn, ())

    def remove(self, item: Item) -> None:
        """An item leaves without counting as its turn's (cancelled)."""
        queue = self._turns[item.turn]
        queue.remove(item)
        self.rows -= item.rows
        if not queue:
            del self._turns[item.turn]

    def take(self, items: list[Item]) -> None:
        """Items that start now: their turns go to the end."""
        for item in items:
            self.remove(item)
            if item.turn in self._turns:
                self._turns.move_to_end(item.turn)

    def clear(self) -> list[Item]:
        """Everything queued, removed."""
        everything = [item for queue in self._turns.values() for item in queue]
        self._turns.clear()
        self.rows = 0
        return everything
