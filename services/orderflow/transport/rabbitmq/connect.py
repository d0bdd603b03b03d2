"""Opening, and dropping, pika connections: the one place where the URL, the TLS options and pika's errors meet.

pika's ``BlockingConnection`` is not thread-safe, so nothing here is shared: every caller opens its own. Every
pika or socket error that means "the broker is not there or not answering" becomes ``BrokerUnavailable``
(chained), here and nowhere else.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
from collections.abc import Iterator, Mapping
from typing import Final

import pika
import pika.exceptions

from orderflow.errors import BrokerUnavailable

_ON_PURPOSE: Final = "dropped on purpose"


class _NotOurAbort(logging.Filter):
    """pika logs every connection it did not close itself as an ERROR; :func:`abort`'s are not errors."""

    def filter(self, record: logging.LogRecord) -> bool:
        return _ON_PURPOSE not in record.getMessage()


for _name in ("pika.adapters.blocking_connection", "pika.adapters.base_connection"):
    logging.getLogger(_name).addFilter(_NotOurAbort())

#: what a broken or refused connection raises from pika (and the sockets under it)
ERRORS: Final = (pika.exceptions.AMQPError, OSError)
HEARTBEAT_S: Final = 30


def parameters(url: str, options: Mapping[str, str], *, timeout: float | None = None) -> pika.URLParameters:
    """pika's parameters for ``url`` with the TLS options applied (``amqps://`` URLs verify the server)."""
    params = pika.URLParameters(url)
    params.heartbeat = int(options.get("heartbeat", HEARTBEAT_S))
    params.client_properties = {"connection_name": options.get("connection_name", "orderflow")}
    if timeout is not None:
        params.socket_timeout = timeout
        params.stack_timeout = timeout
        params.blocked_connection_timeout = timeout
        params.connection_attempts = 1
    if url.startswith("amqps://") or "tls_ca" in options:
        context = ssl.create_default_context(cafile=options.get("tls_ca") or None)
        if "tls_cert" in options:
            context.load_cert_chain(options["tls_cert"], options.get("tls_key") or None)
        params.ssl_options = pika.SSLOptions(context, options.get("tls_server_name") or params.host)
    return params


def open_connection(
    url: str, options: Mapping[str, str], *, name: str, timeout: float | None = None
) -> pika.BlockingConnection:
    """A new connection named ``name`` (the management UI shows it), or ``BrokerUnavailable``."""
    try:
        return pika.BlockingConnection(parameters(url, {**options, "connection_name": name}, timeout=timeout))
    except ERRORS as e:
        raise BrokerUnavailable(f"RabbitMQ at {redact(url)} is unreachable: {describe(e)}") from e


@contextlib.contextmanager
def short_lived(
    url: str, options: Mapping[str, str], *, name: str, timeout: float
) -> Iterator[pika.BlockingConnection]:
    """A connection for one job (probe, declarations), closed afterwards; errors inside become ``BrokerUnavailable``."""
    connection = open_connection(url, options, name=name, timeout=timeout)
    try:
        yield connection
    except ERRORS as e:
        raise BrokerUnavailable(f"RabbitMQ at {redact(url)}: {describe(e)}") from e
    finally:
        close_quietly(connection)


def close_quietly(connection: pika.BlockingConnection | None) -> None:
    if connection is not None and connection.is_open:
        with contextlib.suppress(*ERRORS):
            connection.close()


def abort(connection: pika.BlockingConnection | None) -> None:
    """Drop the TCP connection without AMQP's close handshake.

    Why: RabbitMQ 3.10 handles a clean channel or connection close on a single-active-consumer quorum queue as
    two steps (cancel the consumer, activating the next one; then return its unacknowledged messages), so the
    standby is handed newer messages before the returned older ones. A connection that just goes away is one
    step (return, then activate), as after a crash: the standby gets the returned messages first, in order.
    pika has no public abort, so this reaches its adapter; without it, a clean close is the fallback.
    """
    if connection is None or not connection.is_open:
        return
    impl = getattr(connection, "_impl", None)
    terminate = getattr(impl, "_terminate_stream", None)
    if terminate is None:
        close_quietly(connection)
        return
    with contextlib.suppress(*ERRORS):
        terminate(pika.exceptions.StreamLostError(f"{_ON_PURPOSE}: handing its queue over"))
    for _ in range(100):  # let pika close the socket: it raises StreamLostError once it has, which is the point
        try:
            connection.process_data_events(0.01)
        except ERRORS:
            break
        if connection.is_closed:
            break


def describe(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


def redact(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    scheme, sep, rest = url.partition("://")
    if "@" not in rest:
        return url
    userinfo, _, host = rest.rpartition("@")
    return f"{scheme}{sep}{userinfo.split(':', 1)[0]}:***@{host}"
