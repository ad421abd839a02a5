"""Baseline for POST /api/v1/runs: a bare Flask app whose create is ONE transaction with the
conditional balance debit and the run row insert, and nothing else (no key lookup, no
input validation, no pricing, no ledger row, no idempotency), on the same database engine
and with the same SQLAlchemy engine settings as Runbase.

    DEBIT_DATABASE_URL=sqlite:////tmp/debit.db gunicorn 'debit_insert_app:create_app()'

Its own two-table schema; `init_schema(url, balance)` makes it and the one funded user
before the servers start (five workers racing to create tables would fail on PostgreSQL).
"""
from __future__ import annotations

import json
import os
import secrets
from datetime import datetime, timezone

from flask import Flask, jsonify, request
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.pool import NullPool

COST = 1000  # micro-USD, what local/sketch costs
USER_ID = 1
SCHEMA = [
    """CREATE TABLE IF NOT EXISTS users (
           id INTEGER PRIMARY KEY,
           balance_micros BIGINT NOT NULL CHECK (balance_micros >= 0))""",
    """CREATE TABLE IF NOT EXISTS runs (
           id VARCHAR(40) PRIMARY KEY,
           user_id INTEGER NOT NULL REFERENCES users (id),
           model VARCHAR(200) NOT NULL,
           input TEXT NOT NULL,
           status VARCHAR(20) NOT NULL,
           cost_micros BIGINT NOT NULL,
           created_at VARCHAR(40) NOT NULL)""",
]
DEBIT = text("UPDATE users SET balance_micros = balance_micros - :cost "
             "WHERE id = :id AND balance_micros >= :cost")
INSERT = text("INSERT INTO runs (id, user_id, model, input, status, cost_micros, created_at) "
              "VALUES (:id, :user_id, :model, :input, 'pending', :cost, :created_at)")


class ShortBalance(Exception):
    """The debit found too little balance."""


def make_engine(url: str) -> Engine:
    """The engine Runbase would make for this URL (runbase_web/extensions.py): SQLite in WAL
    with BEGIN IMMEDIATE and no pool; PostgreSQL with a pool."""
    if not url.startswith("sqlite"):
        return create_engine(url, pool_size=10, max_overflow=30, pool_timeout=60,
                             pool_pre_ping=True)
    engine = create_engine(url, poolclass=NullPool,
                           connect_args={"timeout": 30, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON",
                       "busy_timeout=30000"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def init_schema(url: str, balance_micros: int) -> None:
    """Create the two tables and the one user with `balance_micros`."""
    engine = make_engine(url)
    with engine.begin() as connection:
        for statement in SCHEMA:
            connection.exec_driver_sql(statement)
        connection.execute(text("DELETE FROM runs"))
        connection.execute(text("DELETE FROM users"))
        connection.execute(text("INSERT INTO users (id, balance_micros) VALUES (:id, :b)"),
                           {"id": USER_ID, "b": balance_micros})
    engine.dispose()


def create_app(url: str | None = None) -> Flask:
    """The app, on `url` or $DEBIT_DATABASE_URL."""
    app = Flask(__name__)
    engine = make_engine(url or os.environ["DEBIT_DATABASE_URL"])

    @app.post("/runs")
    def create_run():
        """Debit and insert in one transaction; 402 when the balance is short."""
        body = request.get_json()
        run_id = "run_" + secrets.token_hex(12)
        try:
            with engine.begin() as connection:
                if connection.execute(DEBIT, {"cost": COST, "id": USER_ID}).rowcount != 1:
                    raise ShortBalance  # rolls the transaction back
                connection.execute(INSERT, {
                    "id": run_id, "user_id": USER_ID, "model": body["model"],
                    "input": json.dumps(body["input"]), "cost": COST,
                    "created_at": datetime.now(timezone.utc).isoformat()})
        except ShortBalance:
            return jsonify({"error": {"message": "Insufficient balance.",
                                      "code": "insufficient_balance"}}), 402
        return jsonify({"id": run_id, "status": "pending", "costUsd": COST}), 201

    return app
