"""``ORDERFLOW_NATS_*`` settings (``Settings.transport_options``): checked once, so a typo fails at start, naming it.

Connection (TLS and auth are passed to nats-py as they are):

* ``tls_ca`` — CA bundle file; setting it (or ``tls_cert``) turns TLS on (a ``tls://`` URL does too);
* ``tls_cert``, ``tls_key`` — client certificate and key files (mutual TLS);
* ``tls_hostname`` — the name to verify the server certificate against, when it is not the URL's host;
* ``user``, ``password`` — user/password auth (or ``nats://user:pass@host:port`` in the URL);
* ``token`` — token auth;
* ``creds`` — a ``.creds`` file (JWT + NKey, decentralised auth; needs the ``nkeys`` package installed);
* ``connect_timeout`` — seconds to wait for the server on each (re)connect attempt (default 2).

JetStream (what ``ensure_channels`` and ``subscribe`` create; changing them later does not alter what exists):

* ``ack_wait`` — seconds before JetStream redelivers a message a member fetched and neither settled nor kept in
  progress, i.e. how long a crashed replica's messages wait (default 10; see ``subscription``);
* ``max_ack_pending`` — unsettled messages per group and stream before delivery pauses (default 10000);
* ``max_age`` — seconds a stream keeps a message, like Kafka's retention (default 604800, 7 days);
* ``duplicate_window`` — seconds within which a second publication of one event id is dropped (default 120).
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from orderflow.errors import ConfigError

_CONNECTION: Final = ("tls_ca", "tls_cert", "tls_key", "tls_hostname", "user", "password", "token", "creds")
_NUMBERS: Final = {
    "connect_timeout": 2.0,
    "ack_wait": 10.0,
    "max_ack_pending": 10000.0,
    "max_age": 7 * 24 * 3600.0,
    "duplicate_window": 120.0,
}


@dataclass(frozen=True, slots=True)
class Options:
    connect: Mapping[str, Any]
    connect_timeout: float
    ack_wait: float
    max_ack_pending: int
    max_age: float
    duplicate_window: float


def parse(options: Mapping[str, str]) -> Options:
    unknown = sorted(set(options) - set(_CONNECTION) - set(_NUMBERS))
    if unknown:
        names = ", ".join(f"ORDERFLOW_NATS_{n.upper()}" for n in unknown)
        raise ConfigError(f"unknown NATS setting(s) {names}; see orderflow.transport.nats.options")
    numbers: dict[str, float] = {}
    for name, default in _NUMBERS.items():
        raw = options.get(name)
        try:
            numbers[name] = float(raw) if raw not in (None, "") else default
        except ValueError:
            raise ConfigError(f"ORDERFLOW_NATS_{name.upper()}={raw!r} must be a number") from None
        if numbers[name] <= 0:
            raise ConfigError(f"ORDERFLOW_NATS_{name.upper()}={raw!r} must be positive")
    connect: dict[str, Any] = {}
    if options.get("tls_ca") or options.get("tls_cert"):
        context = ssl.create_default_context(cafile=options.get("tls_ca") or None)
        if options.get("tls_cert"):
            context.load_cert_chain(options["tls_cert"], options.get("tls_key") or None)
        connect["tls"] = context
    if options.get("tls_hostname"):
        connect["tls_hostname"] = options["tls_hostname"]
    for name in ("user", "password", "token"):
        if options.get(name):
            connect[name] = options[name]
    if options.get("creds"):
        connect["user_credentials"] = options["creds"]
    return Options(
        connect=connect,
        connect_timeout=numbers["connect_timeout"],
        ack_wait=numbers["ack_wait"],
        max_ack_pending=int(numbers["max_ack_pending"]),
        max_age=numbers["max_age"],
        duplicate_window=numbers["duplicate_window"],
    )
