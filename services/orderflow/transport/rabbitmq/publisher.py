"""Publishing a batch with publisher confirms, pipelined: send them all, then wait for the broker's acks.

Why not pika's ``BlockingChannel.confirm_delivery()``: it waits for each message's confirm before sending the
next, one round trip (and one quorum-queue commit) per record, which is what the outbox relay cannot afford.
Here the records go out back to back on one channel, which keeps their order (per key, and overall), and the
acks (``multiple`` or not) are matched to records by delivery tag. Publishes are ``mandatory``: a record that
no queue takes comes back (``basic.return``, always before its ack) and is reported as an error, never as
acknowledged; a ``basic.nack`` is an error too. Records are persistent (delivery mode 2).

The connection is this publisher's own (pika's connections are not thread-safe), opened on first use and
again after it broke: a broker restart costs the batch that was in flight (errors, which the outbox retries)
and ``on_down`` once; the next ``publish`` reconnects.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, cast

import pika
import pika.channel
import pika.frame
import pika.spec

from orderflow.errors import BrokerUnavailable
from orderflow.transport import Record
from orderflow.transport.rabbitmq import binding, connect

FLUSH_EVERY = 256  # records between two writes to the socket while sending a large batch


class RabbitMQPublisher:
    def __init__(
        self, url: str, options: dict[str, str], *, name: str, on_down: Callable[[str], None] | None = None
    ) -> None:
        self._url = url
        self._options = options
        self._name = name
        self._on_down = on_down
        self._connection: pika.BlockingConnection | None = None
        self._channel: pika.channel.Channel | None = None
        self._next_tag = 1
        self._inflight: dict[int, int] = {}
        self._returned: dict[tuple[str, str, str | None], deque[int]] = {}
        self._failed: dict[int, str] = {}
        self._acked: list[int] = []
        self._closed_reason: str | None = None

    # -- connection ------------------------------------------------------------------------------------------

    def _connect(self, timeout: float) -> pika.channel.Channel:
        if self._connection is not None and self._connection.is_open and self._channel and self._channel.is_open:
            try:
                self._connection.process_data_events(0)  # reads a reset that came while idle: reconnect now
                return self._channel
            except connect.ERRORS as e:
                self._lost(f"connection to RabbitMQ lost: {connect.describe(e)}")
        self._drop()
        connection = connect.open_connection(self._url, self._options, name=self._name)
        try:
            blocking = connection.channel()
            # the asynchronous channel under the blocking one: confirms without a round trip per record
            channel = cast(pika.channel.Channel, getattr(blocking, "_impl"))  # noqa: B009
            selected: list[object] = []
            channel.add_on_return_callback(self._on_return)
            channel.add_on_close_callback(self._on_channel_closed)
            channel.confirm_delivery(self._on_confirm, callback=selected.append)
            deadline = time.monotonic() + timeout
            while not selected:
                if time.monotonic() > deadline:
                    raise BrokerUnavailable("RabbitMQ did not answer confirm.select")
                connection.process_data_events(0.1)
        except connect.ERRORS as e:
            connect.close_quietly(connection)
            raise BrokerUnavailable(f"cannot open a publishing channel: {connect.describe(e)}") from e
        except BrokerUnavailable:
            connect.close_quietly(connection)
            raise
        self._connection, self._channel, self._next_tag, self._closed_reason = connection, channel, 1, None
        return channel

    def _drop(self) -> None:
        connect.close_quietly(self._connection)
        self._connection = self._channel = None

    def _lost(self, reason: str) -> None:
        self._drop()
        if self._on_down is not None:
            self._on_down(reason)

    # -- callbacks (run inside process_data_events) -----------------------------------------------------------

    def _on_confirm(self, frame: pika.frame.Method[Any]) -> None:
        method = frame.method
        tag, multiple = method.delivery_tag, method.multiple
        tags = sorted(t for t in self._inflight if t <= tag) if multiple else [tag]
        nack = isinstance(method, pika.spec.Basic.Nack)
        for t in tags:
            index = self._inflight.pop(t, None)
            if index is None:
                continue
            if nack:
                self._failed[index] = "the broker refused it (basic.nack)"
            elif index not in self._failed:
                self._acked.append(index)

    def _on_return(
        self, _channel: object, method: pika.spec.Basic.Return, props: pika.BasicProperties, _body: bytes
    ) -> None:
        waiting = self._returned.get((method.exchange or "", method.routing_key or "", props.message_id))
        while waiting and waiting[0] not in self._inflight:
            waiting.popleft()  # confirmed already: not the one that came back
        if waiting:
            index = self._inflight.get(waiting.popleft())
            if index is not None:
                self._failed[index] = f"unroutable: {method.reply_code} {method.reply_text} (no queue bound?)"

    def _on_channel_closed(self, _channel: object, reason: BaseException) -> None:
        self._closed_reason = connect.describe(reason)

    # -- the interface ----------------------------------------------------------------------------------------

    def publish(self, records: Sequence[Record], *, timeout: float = 30.0) -> tuple[list[int], dict[int, str]]:
        if not records:
            return [], {}
        channel = self._connect(timeout)
        assert self._connection is not None
        self._inflight, self._returned, self._failed, self._acked = {}, {}, {}, []
        sent = 0
        try:
            for i, record in enumerate(records):
                try:
                    routing_key = record.key.decode("utf-8")
                except UnicodeDecodeError:
                    self._failed[i] = "the key is not UTF-8 (an AMQP routing key is text)"
                    continue
                props = binding.properties(record.headers, message_id=binding.message_id(record.headers))
                channel.basic_publish(record.channel, routing_key, record.value or b"", props, mandatory=True)
                self._inflight[self._next_tag] = i
                self._returned.setdefault((record.channel, routing_key, props.message_id), deque()).append(
                    self._next_tag
                )
                self._next_tag += 1
                sent += 1
                if sent % FLUSH_EVERY == 0:
                    self._connection.process_data_events(0)
            deadline = time.monotonic() + timeout
            while self._inflight and self._closed_reason is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._connection.process_data_events(min(remaining, 1.0))
        except connect.ERRORS as e:
            reason = f"connection to RabbitMQ lost: {connect.describe(e)}"
            self._lost(reason)
            if sent == 0:
                raise BrokerUnavailable(reason) from e
            self._fail_inflight(reason)
        else:
            if self._inflight:
                reason = (
                    f"the channel was closed: {self._closed_reason}"
                    if self._closed_reason is not None
                    else f"not confirmed within {timeout:.0f}s"
                )
                self._fail_inflight(reason)
                self._drop()  # late confirms must not be matched to the next batch's tags
        return sorted(self._acked), dict(self._failed)

    def _fail_inflight(self, reason: str) -> None:
        for index in self._inflight.values():
            self._failed.setdefault(index, reason)
        self._inflight = {}

    def close(self) -> None:
        self._drop()
