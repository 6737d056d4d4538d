"""Request work that is not decoding (normalizing, segmenting and tokenizing texts; detokenizing
and assembling answers) off the event loop, so one large request never delays another's: work
above a size runs on a small thread pool, and stops when its request is cancelled."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

Result = TypeVar("Result")
# Work of this size runs on the loop itself: preparing 2,000 characters (a paragraph) costs about
# 0.1 ms, no more than handing it to a thread and back; most requests are this small.
INLINE_SIZE = 2000


class OffLoop:
    def __init__(self, workers: int) -> None:
        self.executor = ThreadPoolExecutor(workers, thread_name_prefix="nmt-prepare")

    async def run(self, size: int, work: Callable[[Callable[[], bool]], Result]) -> Result:
        """work(cancelled): on the loop when `size` is at most INLINE_SIZE, else on the pool;
        `cancelled()` turns true once the awaiting request is cancelled (its deadline, its
        client gone), for the work to stop early."""
        if size <= INLINE_SIZE:
            return work(_never)
        abandoned = threading.Event()
        running = self.executor.submit(work, abandoned.is_set)
        running.add_done_callback(_retrieve)  # an abandoned work's error is nobody's to report
        try:
            return await asyncio.wrap_future(running)
        except asyncio.CancelledError:
            abandoned.set()
            raise

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


def _never() -> bool:
    return False


def _retrieve(done: Future) -> None:
    if not done.cancelled():
        done.exception()
