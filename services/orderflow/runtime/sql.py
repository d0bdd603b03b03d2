"""Hot-path statements compiled once per dialect and executed straight on the driver's cursor.

A saga burst spent about a fifth of every service's time inside SQLAlchemy's ``Connection.execute`` around the
driver call (execution context, cache lookup, result metadata, events), more than the database itself took. The
handlers' per-event statements are fixed, so they are compiled once per dialect here and run on the DBAPI
connection of the caller's SQLAlchemy transaction: same SQL, same parameters processing (the column types' bind
and result processors, so ``UtcDateTime`` and SQLite's datetime strings behave as through SQLAlchemy), same
transaction, same error mapping (driver errors become SQLAlchemy's, which ``Store`` maps to OrderFlow's).

Statements whose shape depends on their parameters (``IN`` lists) stay with SQLAlchemy.
"""

from __future__ import annotations

import re
from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect

Params = Mapping[str, Any]


class Result:
    """What a statement returned: affected rows, and the rows of a SELECT (attribute access, like SQLAlchemy's)."""

    __slots__ = ("rowcount", "rows")

    def __init__(self, rowcount: int, rows: list[Any]) -> None:
        self.rowcount = rowcount
        self.rows = rows

    def first(self) -> Any | None:
        return self.rows[0] if self.rows else None

    def one(self) -> Any:
        if len(self.rows) != 1:
            raise sa.exc.NoResultFound("no row") if not self.rows else sa.exc.MultipleResultsFound("several rows")
        return self.rows[0]

    def scalar_one(self) -> Any:
        return self.one()[0]


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    # Per bind parameter, in the order the driver wants them: (name in the SQL, key in params or None for a
    # literal, the literal value, the bind processor or None).
    binds: tuple[tuple[str, str | None, Any, Callable[[Any], Any] | None], ...]
    positional: bool
    row: type | None
    result: tuple[Callable[[Any], Any] | None, ...]

    def parameters(self, params: Params) -> Sequence[Any] | dict[str, Any]:
        values = []
        for _name, key, literal, process in self.binds:
            value = params[key] if key is not None else literal
            values.append(process(value) if process is not None else value)
        if self.positional:
            return values
        return {b[0]: v for b, v in zip(self.binds, values, strict=True)}


class Prepared:
    """One statement, compiled on first use per dialect (and per set of columns, for an INSERT)."""

    def __init__(self, statement: sa.Executable) -> None:
        self.statement = statement
        self._cache: dict[tuple[str, tuple[str, ...]], _Compiled] = {}

    def _compiled(self, dialect: Dialect, keys: tuple[str, ...]) -> _Compiled:
        cache_key = (dialect.name, keys if isinstance(self.statement, sa.Insert) else ())
        found = self._cache.get(cache_key)
        if found is None:
            found = self._cache[cache_key] = _compile(self.statement, dialect, keys)
        return found

    def run(self, conn: Connection, params: Params) -> Result:
        """Execute once with ``params``, inside ``conn``'s transaction."""
        compiled = self._compiled(conn.dialect, tuple(sorted(params)))
        bound = compiled.parameters(params)
        cursor = conn.connection.cursor()
        try:
            try:
                cursor.execute(compiled.sql, bound)
            except conn.dialect.loaded_dbapi.Error as e:
                raise _wrapped(conn, compiled.sql, bound, e) from e
            rows: list[Any] = []
            if compiled.row is not None:
                rows = [_row(compiled, raw) for raw in cursor.fetchall()]
            return Result(cursor.rowcount, rows)
        finally:
            cursor.close()

    def run_many(self, conn: Connection, params: Sequence[Params]) -> None:
        """Execute once per item of ``params`` in one driver call (executemany)."""
        if not params:
            return
        compiled = self._compiled(conn.dialect, tuple(sorted(params[0])))
        bound: Any = [compiled.parameters(p) for p in params]
        cursor = conn.connection.cursor()
        try:
            cursor.executemany(compiled.sql, bound)
        except conn.dialect.loaded_dbapi.Error as e:
            raise _wrapped(conn, compiled.sql, bound, e) from e
        finally:
            cursor.close()


_PER_TABLE: dict[tuple[sa.Table, str], Prepared] = {}


def per_table(table: sa.Table, name: str, build: Callable[[sa.Table], sa.Executable]) -> Prepared:
    """The statement ``name`` of ``table``, built once (each service has its own metadata, so its own table object:
    the runtime's inbox and outbox statements are made per table)."""
    found = _PER_TABLE.get((table, name))
    if found is None:
        found = _PER_TABLE[(table, name)] = Prepared(build(table))
    return found


def lookup(
    conn: Connection, table: sa.Table, columns: Sequence[str], where_in: Mapping[str, Sequence[str]]
) -> list[Any]:
    """``SELECT columns FROM table WHERE k IN (...) AND ...`` for plain string columns, as driver SQL.

    The statement's shape depends on how many values each list holds, so it cannot be a ``Prepared``; its text is
    cached per shape (a batch of one event, the idle case, is always the same). Building and compiling the same
    select through SQLAlchemy each time was most of a one-event transaction's time outside the database.
    """
    shape = (conn.dialect.name, table.name, tuple(columns), tuple((k, len(v)) for k, v in where_in.items()))
    text = _LOOKUPS.get(shape)
    if text is None:
        quote = conn.dialect.identifier_preparer.quote
        mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
        where = " AND ".join(f"{quote(k)} IN ({', '.join([mark] * len(v))})" for k, v in where_in.items())
        text = f"SELECT {', '.join(quote(c) for c in columns)} FROM {quote(table.name)} WHERE {where}"
        if len(_LOOKUPS) < 10_000:
            _LOOKUPS[shape] = text
    params = tuple(value for values in where_in.values() for value in values)
    # exec_driver_sql: no statement to build or compile, and still SQLAlchemy's events and error mapping.
    return list(conn.exec_driver_sql(text, params).all())


_LOOKUPS: dict[tuple[Any, ...], str] = {}


def _row(compiled: _Compiled, raw: Sequence[Any]) -> Any:
    assert compiled.row is not None
    return compiled.row(*(p(v) if p is not None else v for p, v in zip(compiled.result, raw, strict=True)))


def _wrapped(conn: Connection, sql: str, params: Any, e: Exception) -> sa.exc.DBAPIError:
    dialect = conn.dialect
    wrapped = sa.exc.DBAPIError.instance(sql, params, e, dialect.loaded_dbapi.Error, dialect=dialect)
    assert isinstance(wrapped, sa.exc.DBAPIError)
    return wrapped


def _compile(statement: sa.Executable, dialect: Dialect, keys: tuple[str, ...]) -> _Compiled:
    column_keys = list(keys) if isinstance(statement, sa.Insert) else None
    compiled = statement.compile(dialect=dialect, column_keys=column_keys)  # type: ignore[attr-defined]
    if any(b.expanding for b in compiled.binds.values()):
        raise ValueError("a statement with an expanding (IN) parameter cannot be prepared")
    processors = compiled._bind_processors
    escaped = compiled.escaped_bind_names or {}
    if dialect.positional:
        order = list(compiled.positiontup)
    else:  # pyformat (psycopg): the names the SQL text uses, once each
        order = list(dict.fromkeys(re.findall(r"%\((\w+)\)s", compiled.string)))
    binds = []
    unescaped = {v: k for k, v in escaped.items()}
    for name in order:
        bind = compiled.binds[unescaped.get(name, name)]
        key = bind.key if bind.required or bind.key in keys else None
        processor = processors.get(unescaped.get(name, name))
        binds.append((name, key, None if key is not None else bind.value, processor))
    row: type | None = None
    result: tuple[Callable[[Any], Any] | None, ...] = ()
    columns = compiled._result_columns  # a SELECT's, or what an INSERT/UPDATE ... RETURNING returns
    if columns:
        row = namedtuple("Row", [c.keyname for c in columns])  # type: ignore[misc,no-redef]
        result = tuple(c.type._cached_result_processor(dialect, None) for c in columns)
    return _Compiled(compiled.string, tuple(binds), bool(dialect.positional), row, result)
