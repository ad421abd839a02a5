"""One hot SELECT run on the database driver's own cursor, with Core's semantics around it.

GET /api/v1/runs/<id> is the API's most frequent request (clients poll it) and is one
indexed SELECT. Through Core's `Connection.execute` that SELECT cost ~93 µs of CPU on
PostgreSQL against ~42 µs on psycopg's cursor: the rest is the execution context and the
result object SQLAlchemy builds around every statement, a sixth of the whole request.

A DriverQuery keeps the statement a SQLAlchemy construct, compiled once per dialect, and
keeps what Core guarantees around it:
- the transaction starts as Core's would (the engine's "begin" event decides: reads run
  in autocommit on PostgreSQL and without BEGIN on SQLite);
- the statement goes through Core's cursor-level execution, so the engine's
  before/after_cursor_execute events, echo logging and error handling apply: a connection
  the server dropped is detected and invalidated, and retry_on_disconnect retries it;
- each column's value goes through its type's own result processor.

What it skips: the statement cache, the execution context (listeners see `context=None`)
and the Result object. Fit for a statement with a fixed shape whose parameters need no
bind processing; it refuses others when compiled.
"""
from __future__ import annotations

from collections import namedtuple
from typing import Any, Mapping

from sqlalchemy import Connection, Dialect, Select


class _Plan:
    """The statement compiled for one dialect: its SQL, the order of its parameters (for
    positional paramstyles) and each column's result processor."""

    def __init__(self, statement: Select, dialect: Dialect):
        compiled = statement.compile(dialect=dialect)
        for bind in compiled.binds.values():
            if bind.type.dialect_impl(dialect).bind_processor(dialect) is not None:
                raise ValueError(f"parameter {bind.key!r} needs bind processing, which a "
                                 "DriverQuery does not do")
        self.sql = str(compiled)
        self.positions = tuple(compiled.positiontup or ()) if dialect.positional else None
        processors = [column.type.dialect_impl(dialect).result_processor(dialect, None)
                      for column in statement.selected_columns]
        self.processed = [(index, processor) for index, processor in enumerate(processors)
                          if processor is not None]

    def arguments(self, params: Mapping[str, Any]) -> Mapping[str, Any] | tuple:
        """The driver's parameters for `params` (by name)."""
        if self.positions is None:
            return params
        return tuple(params[name] for name in self.positions)

    def convert(self, row) -> list:
        """A driver row as Python values of the columns' types."""
        values = list(row)
        for index, processor in self.processed:
            values[index] = processor(values[index])
        return values


class DriverQuery:
    """A SELECT whose first row is read on the driver's cursor (see the module)."""

    def __init__(self, statement: Select):
        self.statement = statement
        #: Rows read by attribute, as Core's rows are.
        self.row_type = namedtuple("Row", [column.key for column in statement.selected_columns])
        self._plans: dict[str, _Plan] = {}

    def first(self, connection: Connection, params: Mapping[str, Any]):
        """The first row for `params` (a named tuple of the selected columns), or None."""
        plan = self._plans.get(connection.dialect.name)
        if plan is None:
            plan = self._plans[connection.dialect.name] = _Plan(self.statement,
                                                                connection.dialect)
        if not connection.in_transaction():
            connection.begin()  # what Core's autobegin does: the begin event applies
        arguments = plan.arguments(params)
        cursor = connection.connection.cursor()
        # Core's own cursor-level execution: events, logging, disconnect handling.
        connection._cursor_execute(cursor, plan.sql, arguments)
        try:
            row = cursor.fetchone()
            cursor.close()
        except Exception as error:  # noqa: BLE001 - Core wraps and re-raises it
            connection._handle_dbapi_exception(error, plan.sql, arguments, cursor, None)
        return None if row is None else self.row_type._make(plan.convert(row))
