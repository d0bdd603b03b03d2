"""Backlog from the brokers that report only that: NATS JetStream and RabbitMQ.

Kafka tells the operator more than how much is waiting: end and committed offsets (so arrival and consume
rates) and partition counts (:mod:`offsets`). The other transports answer one question per consumer group and
channel: how many messages has the group not settled yet (JetStream: its consumer's ``num_pending +
num_ack_pending``; RabbitMQ: its queues' ready + unacknowledged messages). That number is the stage's lag for the
scaler. Without offsets there are no rates, so on these transports a ``FlowAware`` stage is sized by backlog
alone, and no partition count caps it (``maxReplicas`` does).

Each transport package owns its reader, ``orderflow.transport.<name>.backlog.read(url, options, *, group,
channels) -> {channel: messages}``, which raises ``orderflow.errors.BrokerUnavailable`` when the server does not
answer. It is imported when a flow first needs it, so the operator runs, and serves Kafka flows, without the
other transports' clients installed. This module is the one place their answers and errors become the
operator's own.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Final

from orderflow import errors as orderflow_errors
from orderflow_operator import errors
from orderflow_operator.offsets import GroupQuery
from orderflow_operator.spec import Transport

__all__ = [
    "READERS",
    "Reader",
    "StageBacklog",
    "from_secret",
    "read",
    "reader",
    "redact",
]

#: The module of each transport whose backlog this module reads (Kafka's is :mod:`offsets`).
READERS: Final = {
    Transport.NATS: "orderflow.transport.nats.backlog",
    Transport.RABBITMQ: "orderflow.transport.rabbitmq.backlog",
}

#: ``read(url, options, *, group, channels) -> {channel: messages not yet settled by group}``
Reader = Callable[..., Mapping[str, int]]

_PASSWORD = re.compile(r"//([^:/@,]*):[^@/,]*@")


@dataclasses.dataclass(frozen=True, kw_only=True)
class StageBacklog:
    """One stage's waiting work: ``lag`` (the name the status and the scaler have always used) is the sum over
    its channels of the messages its group has not settled."""

    stage: str
    lag: int
    by_channel: Mapping[str, int]


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***`` (conditions, Events and logs show the URL)."""
    return _PASSWORD.sub(r"//\1:***@", url)


def from_secret(secret: Mapping[str, str], transport: Transport) -> tuple[str | None, dict[str, str]]:
    """The URL and the options in a Secret of ``ORDERFLOW_<TRANSPORT>_*`` keys, the variables a service reads.

    Options are the keys other than the URL, lower-cased without the prefix: what
    ``orderflow.runtime.config.transport_options`` makes of the same variables in a service (a test keeps the
    two equal), so one Secret serves the services (``envFrom``) and the operator."""
    prefix = f"ORDERFLOW_{transport.value.upper()}_"
    url_key = f"{prefix}URL"
    options = {k.removeprefix(prefix).lower(): v for k, v in secret.items() if k.startswith(prefix) and k != url_key}
    return secret.get(url_key) or None, options


def reader(transport: Transport) -> Reader:
    """The transport's ``backlog.read``, imported now: :class:`errors.TransportNotInstalled` when it, or the client
    library it needs, is not installed (a failed import is not cached, so installing it needs no restart)."""
    name = READERS[transport]
    try:
        module = importlib.import_module(name)
    except ImportError as e:
        raise errors.TransportNotInstalled(
            f"the {transport.display} backlog reader {name} cannot be imported: {e}"
        ) from e
    read = getattr(module, "read", None)
    if not callable(read):
        raise errors.TransportNotInstalled(f"{name} has no read() function")
    found: Reader = read
    return found


def read(
    transport: Transport,
    url: str,
    options: Mapping[str, str],
    queries: Sequence[GroupQuery],
    *,
    timeout: float | None = None,
    readers: Callable[[Transport], Reader] = reader,
) -> dict[str, StageBacklog | errors.OperatorError]:
    """Read every stage's backlog, one call per consumer group over the union of its stages' channels.

    ``timeout`` goes to a reader that takes one (a ``timeout`` keyword), so it gives up by itself rather than
    outliving the reconciler's wait. A channel the broker has nothing for (no stream, no consumer or queue of the
    group yet) is the stage's :class:`errors.TopicMissing`; a server that does not answer raises
    :class:`errors.BrokerUnavailable`."""
    read_group = readers(transport)
    if timeout is not None and _takes_timeout(read_group):
        read_group = _with_timeout(read_group, timeout)
    channels: dict[str, list[str]] = {}
    for q in queries:
        channels.setdefault(q.group, [])
        channels[q.group] += [t for t in q.topics if t not in channels[q.group]]
    answers = {group: _read_group(read_group, transport, url, options, group, chans)
               for group, chans in channels.items()}
    return {q.stage: _stage(q, answers[q.group], transport) for q in queries}


def _takes_timeout(read_group: Reader) -> bool:
    try:
        return "timeout" in inspect.signature(read_group).parameters
    except (TypeError, ValueError):
        return False


def _with_timeout(read_group: Reader, timeout: float) -> Reader:
    def read_within(*args: object, **kwargs: object) -> Mapping[str, int]:
        return read_group(*args, timeout=timeout, **kwargs)

    return read_within


def _read_group(
    read_group: Reader,
    transport: Transport,
    url: str,
    options: Mapping[str, str],
    group: str,
    channels: Sequence[str],
) -> dict[str, int]:
    where = f"{transport.display} at {redact(url)}"
    try:
        answer = read_group(url, dict(options), group=group, channels=list(channels))
    except errors.OperatorError:
        raise
    except orderflow_errors.BrokerUnavailable as e:
        raise errors.BrokerUnavailable(f"reading the backlog of group {group} from {where}: {e}") from e
    except (orderflow_errors.ConfigError, ValueError) as e:
        raise errors.TransportConfigInvalid(f"{where} refused the settings: {e}") from e
    except OSError as e:  # a reader that let a socket error through: the server is not there
        raise errors.BrokerUnavailable(f"reading the backlog of group {group} from {where}: {e}") from e
    if not isinstance(answer, Mapping) or not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 0 for k, v in answer.items()
    ):
        raise errors.TransportError(
            f"the {transport.display} backlog reader answered {answer!r}, not {{channel: count}}"
        )
    return dict(answer)


def _stage(q: GroupQuery, answer: Mapping[str, int], transport: Transport) -> StageBacklog | errors.OperatorError:
    missing = tuple(t for t in q.topics if t not in answer)
    if missing:
        plural = len(missing) > 1
        return errors.TopicMissing(
            f"stage {q.stage}: {transport.display} has no backlog for channel{'s' if plural else ''} "
            f"{', '.join(missing)} of group {q.group} (not created yet: has the service started?)",
            topics=missing,
        )
    by_channel = {t: answer[t] for t in q.topics}
    return StageBacklog(stage=q.stage, lag=sum(by_channel.values()), by_channel=by_channel)
