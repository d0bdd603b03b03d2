"""The shapes the services' HTTP endpoints share, written once.

Every service reads one row by its key or answers 404, some write one row by its key (an update, or an insert
when there is none), and three of them take an order id from the path. Written in each service they drifted
(four copies of the order-id pattern, three of get-or-404); here each is one function the endpoints call.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from orderflow.errors import RequestError
from orderflow.events import OrderId, event
from orderflow.runtime.db import Store
from orderflow.runtime.http import Request, path_param


def order_id(request: Request) -> OrderId:
    """The ``{order_id}`` path parameter; 400 unless it is an order id."""
    return OrderId(path_param(request, "order_id", event.ORDER_ID_PATTERN, "order id (ord_ followed by 32 hex digits)"))


def order_row(store: Store, key: sa.Column[Any], request: Request, *, service: str) -> sa.Row[Any]:
    """What ``service`` knows of the order named by the ``{order_id}`` path parameter: the row of ``key``'s table;
    400 for a malformed id, 404 when the service has seen no event for that order."""
    order = order_id(request)
    return one_or_404(store, key, order, missing=f"{service} has seen no event for order {order}")


def one_or_404(store: Store, key: sa.Column[Any], value: str, *, missing: str) -> sa.Row[Any]:
    """The row of ``key``'s table whose ``key`` is ``value``; 404 with ``missing`` as the message when there is none."""
    with store.read() as conn:
        row = conn.execute(sa.select(key.table).where(key == value)).first()
    if row is None:
        raise RequestError(404, missing)
    return row


def upsert(
    store: Store, key: sa.Column[Any], value: str, values: Mapping[str, Any], *, on_insert: Mapping[str, Any] = {}
) -> sa.Row[Any]:
    """Set ``values`` on the row whose ``key`` is ``value``, inserting it (with ``on_insert`` too) when absent;
    returns the row as written. Two writers inserting one new key race only on PostgreSQL, where the loser's
    ``WriteConflict`` is answered 503 and a retry updates the winner's row."""
    table = key.table
    with store.write() as conn:
        if not conn.execute(sa.update(table).where(key == value).values(**values)).rowcount:
            conn.execute(sa.insert(table).values({key.name: value, **values, **on_insert}))
        return conn.execute(sa.select(table).where(key == value)).one()
