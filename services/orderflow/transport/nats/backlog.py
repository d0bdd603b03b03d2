"""What a group has not settled yet, per channel, read from JetStream for the operator (it scales by it).

For a group's durable consumer on a channel's stream that is ``num_pending`` (stored, not yet delivered to the
group) plus ``num_ack_pending`` (delivered, not yet acked): the same quantity as Kafka's lag, counting in-flight
work. A group whose consumer does not exist yet has the whole stream ahead of it (its consumer starts at the first
message); a channel whose stream does not exist has nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

import nats.errors
import nats.js.errors
from nats.aio.client import Client

from orderflow.errors import BrokerUnavailable
from orderflow.transport.nats import naming, options
from orderflow.transport.nats.connection import unavailable


def read(
    url: str, options_: Mapping[str, str], *, group: str, channels: Sequence[str], timeout: float = 10.0
) -> dict[str, int]:
    """Unsettled messages of ``group`` per channel. Blocking (its own connection, closed again): call it from a
    worker thread, as the operator's reconciler does. ``BrokerUnavailable`` when the server does not answer."""
    settings = options.parse(options_)
    try:
        return asyncio.run(asyncio.wait_for(_read(url, settings, group, channels), timeout))
    except TimeoutError as e:
        raise BrokerUnavailable(f"NATS at {url}: backlog of {group}: no answer within {timeout}s") from e
    except (OSError, nats.errors.Error, nats.js.errors.Error) as e:
        raise unavailable(f"backlog of {group}", e) from e


async def _quiet(exc: Exception) -> None:
    """nats-py logs every failed attempt with a traceback by default; the raised error says it once."""


async def _read(url: str, settings: options.Options, group: str, channels: Sequence[str]) -> dict[str, int]:
    nc = Client()
    await nc.connect(
        servers=[url],
        # allow_reconnect=False alone still retries the server after reconnect_time_wait (2 s): fail at once.
        allow_reconnect=False,
        max_reconnect_attempts=1,
        reconnect_time_wait=0,
        connect_timeout=settings.connect_timeout,  # type: ignore[arg-type]  # nats-py annotates seconds as int
        name=f"orderflow-backlog-{group}",
        error_cb=_quiet,
        **settings.connect,
    )
    try:
        js = nc.jetstream()
        out: dict[str, int] = {}
        for channel in channels:
            stream = naming.stream(channel)
            try:
                info = await js.consumer_info(stream, naming.consumer(group))
            except nats.js.errors.NotFoundError:
                try:
                    out[channel] = (await js.stream_info(stream)).state.messages
                except nats.js.errors.NotFoundError:
                    out[channel] = 0
                continue
            out[channel] = (info.num_pending or 0) + (info.num_ack_pending or 0)
        return out
    finally:
        await nc.close()
