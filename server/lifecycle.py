"""Where the server is in its life (loading, serving, draining) and which requests are in flight,
so that shutdown answers what it accepted and refuses the rest."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager

from server.errors import Unavailable
from server.models import ModelRegistry, ServedModel

# After the last accepted request is answered, the server keeps refusing newcomers with
# UNAVAILABLE until none has come for this long: a call that reaches a server in the middle of
# stopping would otherwise end CANCELLED, which clients do not retry elsewhere.
QUIET_BEFORE_STOP_SECONDS = 0.5


class Lifecycle:
    def __init__(self) -> None:
        self.registry: ModelRegistry | None = None
        self.draining = False
        self.active = 0
        self.idle = asyncio.Event()
        self.idle.set()
        self.last_request_at = 0.0

    @contextmanager
    def request(self) -> Iterator[None]:
        self.last_request_at = time.monotonic()
        if self.draining:
            raise Unavailable("the server is shutting down and takes no new requests; retry (another replica will answer)")
        if self.registry is None:
            raise Unavailable("models are still loading; retry once the health service reports SERVING")
        self.active += 1
        self.idle.clear()
        try:
            yield
        finally:
            self.active -= 1
            if self.active == 0:
                self.idle.set()

    def resolve(self, name: str, version: str) -> ServedModel:
        assert self.registry is not None
        return self.registry.resolve(name, version)

    async def drain(self, seconds: float) -> bool:
        """Refuse new requests and wait for the accepted ones; False if some were still running."""
        self.draining = True
        deadline = time.monotonic() + seconds
        try:
            await asyncio.wait_for(self.idle.wait(), seconds)
        except TimeoutError:
            return False
        while (quiet_until := self.last_request_at + QUIET_BEFORE_STOP_SECONDS) > time.monotonic() and time.monotonic() < deadline:
            await asyncio.sleep(min(quiet_until, deadline) - time.monotonic())
        return True
