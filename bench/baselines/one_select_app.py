"""Reference for GET /api/v1/runs/:id: a bare Flask app that reads one run row by primary
key and returns it as JSON, and nothing else (no key, no request hooks, no ORM). It sends
its SELECT on the driver itself, kept open per process, the way Runbase's hot GET does
(PostgreSQL: a prepared statement in autocommit; SQLite: one WAL connection, no BEGIN), so
it shows what one database read costs a Flask process on this machine.

    ONE_SELECT_DATABASE_URL=postgresql://... gunicorn one_select_app:app

`init_schema(url)` makes its one-table schema and the row `run_bench` before the servers
start. The URL takes SQLAlchemy's spelling (sqlite:///path, postgresql+psycopg://...).
"""
from __future__ import annotations

import os
import sqlite3

import psycopg
from flask import Flask, jsonify

RUN_ID = "run_bench"
SCHEMA = """CREATE TABLE IF NOT EXISTS runs (
                id VARCHAR(40) PRIMARY KEY,
                model VARCHAR(200) NOT NULL,
                status VARCHAR(20) NOT NULL,
                cost_micros BIGINT NOT NULL,
                created_at VARCHAR(40) NOT NULL)"""
ROW = (RUN_ID, "local/sketch", "succeeded", 1000, "2026-11-27T00:00:00Z")
COLUMNS = ("id", "model", "status", "costUsd", "createdAt")


def _sqlite_path(url: str) -> str | None:
    """The file of a sqlite:/// URL, or None for any other database."""
    return url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else None


def _postgres_dsn(url: str) -> str:
    """A libpq DSN from SQLAlchemy's spelling of a PostgreSQL URL."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def init_schema(url: str) -> None:
    """Create the table and its one row (again, if it exists)."""
    path = _sqlite_path(url)
    if path is not None:
        with sqlite3.connect(path) as connection:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute(SCHEMA)
            connection.execute("DELETE FROM runs")
            connection.execute("INSERT INTO runs VALUES (?, ?, ?, ?, ?)", ROW)
        return
    with psycopg.connect(_postgres_dsn(url), autocommit=True) as connection:
        connection.execute(SCHEMA)
        connection.execute("DELETE FROM runs")
        connection.execute("INSERT INTO runs VALUES (%s, %s, %s, %s, %s)", ROW)


class _Reader:
    """Reads a run row by id on one connection of this process, opened at the first read
    (after gunicorn forked)."""

    def __init__(self, url: str):
        self.path = _sqlite_path(url)
        self.dsn = None if self.path is not None else _postgres_dsn(url)
        self.connection = None

    def __call__(self, run_id: str):
        """The run's row as a tuple, or None."""
        if self.path is not None:
            self.connection = self.connection or sqlite3.connect(self.path,
                                                                 isolation_level=None)
            return self.connection.execute(
                "SELECT id, model, status, cost_micros, created_at FROM runs WHERE id = ?",
                (run_id,)).fetchone()
        self.connection = self.connection or psycopg.connect(self.dsn, autocommit=True)
        return self.connection.execute(
            "SELECT id, model, status, cost_micros, created_at FROM runs WHERE id = %(id)s",
            {"id": run_id}, prepare=True).fetchone()

    def close(self) -> None:
        """Close the connection, if one was opened."""
        if self.connection is not None:
            self.connection.close()
            self.connection = None


def create_app(url: str | None = None) -> Flask:
    """The app, on `url` or $ONE_SELECT_DATABASE_URL."""
    app = Flask(__name__)
    read = app.extensions["one_select_reader"] = _Reader(
        url or os.environ["ONE_SELECT_DATABASE_URL"])

    @app.get("/runs/<run_id>")
    def get_run(run_id: str):
        """The run as JSON, or 404."""
        row = read(run_id)
        if row is None:
            return jsonify({"error": {"message": "Run not found.", "code": "not_found"}}), 404
        return jsonify(dict(zip(COLUMNS, row)))

    return app
