"""One reconcile loop per OrderFlow, paced by the flow's own ``scaling.intervalSeconds``.

Why not a kopf timer or daemon: in kopf 1.45 both put kopf's finalizer on every object they serve (a
daemon must be stopped before its object goes), so an OrderFlow could not be deleted while the operator is
down or uninstalled. The operator owns nothing outside the object that needs cleaning up, so it takes no
finalizer at all: kopf's low-level ``on.event`` handler (which writes nothing to the object) feeds this
registry, and the registry runs one asyncio task per object.

The loop also reacts faster than either kopf primitive would. A timer's interval is fixed in its decorator,
so honouring a per-object interval means a short timer that skips ticks, which adds up to one short period of
delay to every reaction. Here each tick starts exactly ``intervalSeconds`` after the previous one started,
the first tick runs as soon as the object is seen, and a spec change (a new ``metadata.generation``) wakes
the loop at once instead of waiting out the interval. A tick that ends not Ready is retried within
:data:`RETRY_SECONDS` even when the interval is longer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

from orderflow_operator import reconcile, spec

__all__ = [
    "FlowWorker",
    "Workers",
]

logger = logging.getLogger(__name__)

Key = tuple[str, str]
#: Longest wait before looking again at a flow whose last tick was not Ready.
RETRY_SECONDS = 5.0
#: ``(body, event type, reason, message)`` -> posts a Kubernetes Event about ``body``.
Poster = Callable[[Mapping[str, Any], str, str, str], None]


def key_of(body: Mapping[str, Any]) -> Key:
    meta = body.get("metadata") or {}
    return str(meta.get("namespace")), str(meta.get("name"))


def _uid(body: Mapping[str, Any]) -> Any:
    return (body.get("metadata") or {}).get("uid")


class FlowWorker:
    """The loop for one OrderFlow. ``update()`` hands it the latest body seen on the watch."""

    def __init__(self, body: Mapping[str, Any], *, kube: reconcile.KubeApi, poster: Poster) -> None:
        self.body = body
        self.key = key_of(body)
        self.state = reconcile.FlowState()
        self.kube = kube
        self.poster = poster
        self.ticks = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def generation(self) -> Any:
        return (self.body.get("metadata") or {}).get("generation")

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"orderflow {self.key[0]}/{self.key[1]}")

    def update(self, body: Mapping[str, Any]) -> None:
        changed = (body.get("metadata") or {}).get("generation") != self.generation
        self.body = body
        if changed:
            self._wake.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _post(self, event_type: str, reason: str, message: str) -> None:
        self.poster(self.body, event_type, reason, message)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        interval: float = spec.DEFAULT_INTERVAL_SECONDS
        while True:
            started = loop.time()
            self._wake.clear()
            try:
                result = await reconcile.tick(self.body, self.state, kube=self.kube, post_event=self._post)
            except asyncio.CancelledError:
                raise
            except Exception:  # the loop must outlive any bug in one tick
                logger.exception("Reconcile of %s/%s failed; retrying soon", *self.key)
                interval = min(interval, RETRY_SECONDS)
            else:
                # A problem (Kafka away, a Deployment or topic missing) is looked at again soon, not only
                # after a long interval: the fix is often seconds away (a topic being created, say).
                interval = result.interval if result.ready else min(result.interval, RETRY_SECONDS)
                logger.debug("%s/%s tick took %.0f ms", *self.key, (loop.time() - started) * 1000)
                for stage, (old, new) in result.scaled.items():
                    logger.info("%s/%s stage %s scaled %d -> %d", *self.key, stage, old, new)
            self.ticks += 1
            delay = max(0.0, started + interval - loop.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)


class Workers:
    """The registry of per-object loops, fed by the watch."""

    def __init__(self, *, kube: reconcile.KubeApi, poster: Poster) -> None:
        self.kube = kube
        self.poster = poster
        self._workers: dict[Key, FlowWorker] = {}

    def __len__(self) -> int:
        return len(self._workers)

    async def seen(self, body: Mapping[str, Any]) -> None:
        """An object was listed, added or modified: start its loop, or hand it the new body."""
        key = key_of(body)
        worker = self._workers.get(key)
        if worker is not None and _uid(worker.body) != _uid(body):
            await self.gone(worker.body)  # deleted and recreated while the watch was away
            worker = None
        if worker is None:
            worker = self._workers[key] = FlowWorker(body, kube=self.kube, poster=self.poster)
            worker.start()
            logger.info("Watching OrderFlow %s/%s", *key)
        else:
            worker.update(body)

    async def gone(self, body: Mapping[str, Any]) -> None:
        worker = self._workers.pop(key_of(body), None)
        if worker is not None:
            await worker.stop()
            logger.info("Stopped watching OrderFlow %s/%s", *worker.key)

    async def stop_all(self) -> None:
        workers, self._workers = list(self._workers.values()), {}
        await asyncio.gather(*(w.stop() for w in workers))
