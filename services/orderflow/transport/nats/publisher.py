"""Publishing records to JetStream and knowing they are stored: one PubAck per record, pipelined across keys.

A JetStream publish is a request whose reply (the PubAck) comes once the stream has stored the message, so an
acknowledged record is never lost (file storage). The records of a batch go out in *waves*: wave ``j`` holds the
``j``-th record of every key, all sent at once, and the next wave waits for its acks. So different orders are
pipelined (a relay batch is one wave when every order has one event in it), while a record is sent only once the
one before it of the same key is stored: if that one failed, the key's later records are not sent and reported
failed, and a retry publishes them in order. An unanswered publish may still have been stored; its retry carries
the same ``Nats-Msg-Id`` (the event id), which JetStream de-duplicates within the stream's duplicate window.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Final

import nats.errors
import nats.js.errors
from nats.js.api import PubAck

from orderflow.errors import BrokerUnavailable
from orderflow.transport import Record, records_by_key
from orderflow.transport.nats import binding, naming
from orderflow.transport.nats.connection import Connection, unavailable
from orderflow.transport.nats.loop import LoopThread

SKIPPED: Final = "not sent: an earlier record of its key was not acknowledged"


class NatsPublisher:
    """``orderflow.transport.Publisher`` on the transport's connection (JetStream needs no producer of its own)."""

    def __init__(self, conn: Connection, loop: LoopThread, *, role: str, partitions: int) -> None:
        self._conn = conn
        self._loop = loop
        self.role = role
        self._partitions = partitions

    def publish(self, records: Sequence[Record], *, timeout: float = 30.0) -> tuple[list[int], dict[int, str]]:
        if not records:
            return [], {}
        try:
            return self._loop.run(self._publish(records, timeout), timeout=timeout + 5.0)
        except TimeoutError as e:
            raise BrokerUnavailable(f"NATS: publishing {len(records)} record(s): {e}") from e
        except RuntimeError as e:
            raise BrokerUnavailable(f"NATS: {e}") from e

    def close(self) -> None:
        """Nothing of its own to close: the connection is the transport's."""

    async def _publish(self, records: Sequence[Record], timeout: float) -> tuple[list[int], dict[int, str]]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        await self._conn.ready(timeout=min(timeout, self._conn.options.connect_timeout))
        acked: list[int] = []
        errors: dict[int, str] = {}
        pending = [list(indexes) for indexes in records_by_key(records).values()]
        while pending:
            wave = [indexes.pop(0) for indexes in pending]
            remaining = max(0.001, deadline - loop.time())
            results = await asyncio.gather(*(self._one(records[i], remaining) for i in wave))
            still: list[list[int]] = []
            for i, error, rest in zip(wave, results, pending, strict=True):
                if error is None:
                    acked.append(i)
                    if rest:
                        still.append(rest)
                else:
                    errors[i] = error
                    errors.update({j: SKIPPED for j in rest})
            pending = still
        acked.sort()
        return acked, errors

    async def _one(self, record: Record, timeout: float) -> str | None:
        """Publish one record and wait for its PubAck: ``None``, or why it is not known to be stored."""
        try:
            headers = binding.to_wire(key=record.key, headers=record.headers)
        except ValueError as e:
            return str(e)
        subject = naming.subject(record.channel, record.key, self._partitions)
        try:
            ack: PubAck = await self._conn.js.publish(subject, record.value or b"", timeout=timeout, headers=headers)
        except (nats.errors.Error, nats.js.errors.Error, TimeoutError) as e:
            return str(unavailable(f"publish to {subject}", e))
        if ack.stream != naming.stream(record.channel):
            return f"stored by stream {ack.stream!r}, not {naming.stream(record.channel)!r}"
        return None
