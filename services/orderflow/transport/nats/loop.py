"""One private asyncio event loop in a daemon thread: how the synchronous seam drives asyncio-only nats-py.

The runtime calls a transport from its own threads (consumer loop, relay, probe). nats-py is asyncio, and a
connection belongs to the loop it was made on, so each transport owns one loop in one daemon thread and every call
crosses into it with ``asyncio.run_coroutine_threadsafe``. All state the client touches lives on that loop, so it
needs no locks; the calling thread only waits for a result (with a deadline) or, to settle, not even that.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class LoopThread:
    """``run(coro, timeout)`` from any thread runs ``coro`` on the private loop and returns its result."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            pending = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.close()

    @property
    def running(self) -> bool:
        return self._thread.is_alive() and not self.loop.is_closed()

    def in_loop(self) -> bool:
        return threading.current_thread() is self._thread

    def run(self, coro: Coroutine[Any, Any, T], *, timeout: float) -> T:
        """Run ``coro`` on the loop and wait up to ``timeout`` s (``TimeoutError`` after that, ``coro`` cancelled)."""
        if not self.running:
            coro.close()
            raise RuntimeError("the NATS transport is closed")
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"no answer within {timeout:.1f}s") from None

    def submit(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` on the loop without waiting; a failure is logged (fire-and-forget, like a NATS ack)."""
        if not self.running:
            coro.close()
            return
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        future.add_done_callback(_log_failure)

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            if not self.in_loop():
                self._thread.join(timeout)


def _log_failure(future: concurrent.futures.Future[None]) -> None:
    if future.cancelled():
        return
    exc = future.exception()
    if exc is not None:
        log.warning("NATS background operation failed: %s", exc)
