"""One error tree (``orderflow.errors``), drawn in its docstring, with each dependency's errors mapped once."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import sqlalchemy as sa

from orderflow import errors
from orderflow.events import codec
from orderflow.runtime.db import Store
from orderflow_operator import errors as operator_errors

CLASSES = {name: obj for name, obj in vars(errors).items() if inspect.isclass(obj) and issubclass(obj, Exception)}


def test_every_error_is_an_orderflow_error_and_is_drawn_in_the_tree() -> None:
    tree = errors.__doc__ or ""
    assert sorted(CLASSES) == sorted(errors.__all__)
    for name, cls in CLASSES.items():
        assert issubclass(cls, errors.OrderFlowError), name
        assert f"    {name} " in tree or f"── {name} " in tree, f"{name} is missing from the tree in errors.py"


def test_the_drawing_matches_the_classes() -> None:
    """Each class is drawn under its base: the drawing's indentation encodes the inheritance."""
    drawn: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    for line in (errors.__doc__ or "").splitlines():
        words = line.replace("│", " ").replace("├──", "   ").replace("└──", "   ").split()
        if not words or words[0] not in {*CLASSES, "OperatorError"}:
            continue
        depth = len(line) - len(line.replace("│", " ").replace("├──", "   ").replace("└──", "   ").lstrip())
        while stack and stack[-1][0] >= depth:
            stack.pop()
        if stack:
            drawn[words[0]] = stack[-1][1]
        stack.append((depth, words[0]))
    actual = {n: c.__mro__[1].__name__ for n, c in CLASSES.items() if n != "OrderFlowError"}
    actual["OperatorError"] = operator_errors.OperatorError.__mro__[1].__name__
    assert drawn == actual


def test_poison_is_the_permanent_failure_of_a_message() -> None:
    """Issue 14: ``Poison`` (events/codec.py) mirrored ``Permanent`` outside ``OrderFlowError``."""
    assert codec.Poison is errors.Poison and issubclass(errors.Poison, errors.Permanent)
    assert issubclass(errors.SchemaViolation, errors.Poison)
    assert issubclass(operator_errors.OperatorError, errors.OrderFlowError)


def test_the_store_maps_an_integrity_race_to_a_retryable_write_conflict(tmp_path: Path) -> None:
    """Issue 14: ``IntegrityError`` was treated as transient in three places; the store maps it, once."""
    metadata = sa.MetaData()
    table = sa.Table("things", metadata, sa.Column("key", sa.String(8), primary_key=True))
    store = Store(f"sqlite:///{tmp_path / 'things.db'}", metadata)
    try:
        with store.write() as conn:
            conn.execute(table.insert().values(key="a"))
        with pytest.raises(errors.WriteConflict) as caught, store.write() as conn:
            conn.execute(table.insert().values(key="a"))
        assert isinstance(caught.value, errors.Retryable)
        assert isinstance(caught.value.__cause__, sa.exc.IntegrityError)
    finally:
        store.dispose()
