"""Large inserts in batches, and large sets matched in one parameter.

Inserts: a graph of thousands of tasks and tens of thousands of edges is
stored in statements of `BATCH` rows, each one `INSERT ... SELECT * FROM unnest(...)` with
one array parameter a column: a few statements for ten thousand rows, where an
`executemany` sends one statement a row (and fires each statement trigger once a row: the
timeline's notification), and a multi-row `VALUES` makes SQLAlchemy compile a statement of
tens of thousands of parameters. While PostgreSQL stores a batch the next one is made, and
the event loop serves other requests.

The rows are plain dicts (not ORM objects, which cost several times as much a row); a
column's Python-side default applies when the rows leave it out, its server default
otherwise, as with any insert.

Matching: `any_of(column, values)` is `column = ANY(:values)`, the values one array
parameter, where `column IN (...)` renders one parameter a value: hundreds of ids (a run of
reports, a relay pass) would make PostgreSQL parse and plan a new statement of that many
parameters each time, some milliseconds of the transaction."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Iterable, Sequence
from itertools import islice
from typing import Any, cast

from sqlalchemy import Column, ColumnElement, Table, any_, func, insert, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.expression import bindparam

from swarm_orchestrator.db.models import Base

__all__ = ["BATCH", "any_of", "insert_rows"]

BATCH = 2000
"""Rows a statement inserts: some milliseconds of the event loop to bind, and the
round trips stay few."""


async def insert_rows(db: AsyncSession, model: type[Base], rows: Iterable[dict[str, Any]]) -> None:
    """Insert `rows` (consumed lazily, a batch at a time; every row names the same columns)
    into `model`'s table. While PostgreSQL stores a batch, the next one is made: the rows
    are taken from `rows` and laid out in columns meanwhile (`rows` must not use `db`)."""
    table = cast(Table, model.__table__)
    it = iter(rows)
    storing: asyncio.Future[Any] | None = None
    try:
        while batch := list(islice(it, BATCH)):
            statement, params = _batch(table, batch)
            if storing is not None:
                await storing
            storing = asyncio.ensure_future(db.execute(statement, params))
            await asyncio.sleep(0)  # it binds and sends the batch, then waits for the answer
        if storing is not None:
            await storing
            storing = None
    finally:
        if storing is not None:  # an error: the statement ends before the error goes on
            with contextlib.suppress(BaseException):
                await storing


def _batch(table: Table, batch: list[dict[str, Any]]) -> tuple[Any, dict[str, list[Any]]]:
    """The statement inserting `batch` and its parameters: one array a column."""
    names = list(batch[0])
    defaults = _defaults(table, names)
    columns = [table.c[name] for name in [*names, *defaults]]
    values = [[row[name] for row in batch] for name in names]
    values += [[default() for _ in batch] for default in defaults.values()]
    return _statement(table, tuple(columns)), dict(zip(_params(columns), values, strict=True))


def _defaults(table: Table, names: Sequence[str]) -> dict[str, Any]:
    """For each column the rows leave out that has a Python-side default: a function that
    gives its value (the server fills the others)."""
    found: dict[str, Any] = {}
    for column in table.columns:
        default = column.default
        if column.name in names or default is None:
            continue
        if default.is_scalar:
            found[column.name] = lambda value=default.arg: value  # type: ignore[attr-defined]
        elif default.is_callable:
            found[column.name] = lambda fn=default.arg: fn(None)  # type: ignore[attr-defined]
        else:  # a SQL expression or a sequence: not for an array
            raise ValueError(f"{table.name}.{column.name}: a default insert_rows cannot give")
    return found


def _params(columns: Sequence[Column[Any]]) -> list[str]:
    return [f"c{i}" for i in range(len(columns))]


@functools.cache
def _statement(table: Table, columns: tuple[Column[Any], ...]) -> Any:
    """`INSERT INTO table (columns) SELECT * FROM unnest(:c0, :c1, ...)`, each parameter an
    array of its column's type (so its values are bound as that type: JSON encoded, UUIDs
    as UUIDs)."""
    arrays = [
        bindparam(name, type_=ARRAY(column.type, dimensions=1))
        for name, column in zip(_params(columns), columns, strict=True)
    ]
    unnested = func.unnest(*arrays).table_valued(*_params(columns)).render_derived("rows")
    return insert(table).from_select(columns, select(unnested))


def any_of(column: Any, values: Iterable[Any]) -> ColumnElement[bool]:
    """`column = ANY(:values)`: whether `column` is one of `values`, bound as one array."""
    array = bindparam(None, list(values), type_=ARRAY(column.type, dimensions=1), unique=True)
    return cast(ColumnElement[bool], column == any_(array))
