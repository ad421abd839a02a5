"""Operator commands (README, "Operator commands"): a stable interface that scripts and docs use."""
from __future__ import annotations

import re
import threading
from functools import wraps
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext
from sqlalchemy.exc import DBAPIError

from . import state
from .config import ConfigError, usd_to_micros
from .errors import RunbaseError
from .extensions import db
from .money import format_usd
from .services import accounts, billing, keys
from .storage import SAFE_NAME, LocalStorage

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
db_group = AppGroup("db", help="Database schema commands.")


def alembic_config(app: Flask):
    """Alembic's configuration for this app's database."""
    # Imported here: Alembic and Mako cost ~130 ms, which only migrations need, and every
    # CLI command (create-key, add-credit, ...) loads this module.
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = db.state(app).engine
    return config


def upgrade_database(app: Flask) -> None:
    """Bring the schema up to the newest migration (idempotent)."""
    if _at_head(app):
        return  # the usual restart: no need to load Alembic at all
    from alembic import command  # see alembic_config

    with app.app_context():
        command.upgrade(alembic_config(app), "head")


_REVISION_LINE = re.compile(r"^(down_revision|revision)\s*=\s*['\"]([^'\"]+)['\"]\s*$", re.M)


def script_head() -> str | None:
    """The newest migration's revision, read from the scripts' `revision` and
    `down_revision` lines; None when they don't form one plain chain (then only Alembic
    itself can tell)."""
    revisions, parents = set(), set()
    for script in (MIGRATIONS / "versions").glob("*.py"):
        found = dict((key, value) for key, value in _REVISION_LINE.findall(script.read_text()))
        if "revision" not in found:
            return None
        revisions.add(found["revision"])
        parents.add(found.get("down_revision"))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def _at_head(app: Flask) -> bool:
    """Whether the database already records the newest migration (a cheap check that
    saves ~150 ms of Alembic and Mako imports on every start)."""
    head = script_head()
    if head is None:
        return False
    try:
        with db.state(app).engine.connect() as connection:
            current = connection.exec_driver_sql("SELECT version_num FROM alembic_version").all()
    except DBAPIError:  # a new database: no alembic_version table yet
        return False
    return [row[0] for row in current] == [head]


UPGRADE_HINT = "run `flask --app app db upgrade` first"


def schema_problem(app: Flask) -> str | None:
    """Why the database cannot serve the commands yet (one line), or None when its schema
    is the newest migration."""
    if _at_head(app):
        return None  # the usual case, answered without loading Alembic
    from alembic.runtime.migration import MigrationContext  # see alembic_config
    from alembic.script import ScriptDirectory

    heads = set(ScriptDirectory.from_config(alembic_config(app)).get_heads())
    with db.state(app).engine.connect() as connection:
        current = set(MigrationContext.configure(connection).get_current_heads())
    if current == heads:
        return None
    if not current:
        return f"The database has no tables yet: {UPGRADE_HINT}."
    return f"The database schema is older or newer than this code's: {UPGRADE_HINT}."


def needs_schema(command):
    """Decorator for commands that use the tables: on a fresh or outdated database they
    exit with one line saying what to run, not a traceback from the first query.
    (They do not migrate by themselves: on a shared database that is the operator's call.)"""
    @wraps(command)
    def wrapper(*args, **kwargs):
        problem = schema_problem(current_app._get_current_object())
        if problem:
            raise click.ClickException(problem)
        return command(*args, **kwargs)
    return wrapper


@db_group.command("upgrade")
def db_upgrade():
    """Apply all migrations."""
    upgrade_database(current_app._get_current_object())
    click.echo("Database is up to date.")


def _dollars(value: str, option: str) -> int:
    try:
        return usd_to_micros(option, value)
    except ConfigError as error:
        raise click.BadParameter(str(error)) from None


def _user_or_fail(email: str):
    user = accounts.find_user(db.session, email)
    if user is None:
        raise click.ClickException(f"No account with email {email}.")
    return user


@click.command("create-user")
@with_appcontext
@click.argument("email")
@click.option("--password", required=True, help="Sign-in password (at least 8 characters).")
@click.option("--credit", default=None, help="Starting credit in USD (default: the signup grant).")
@click.option("--admin", is_flag=True, help="Make the account an administrator.")
@needs_schema
def create_user(email: str, password: str, credit: str | None, admin: bool):
    """Create an account."""
    micros = (current_app.config["SIGNUP_CREDIT_MICROS"] if credit is None
              else _dollars(credit, "--credit"))
    try:
        user = accounts.create_user(db.session, email, password, credit_micros=micros, is_admin=admin)
    except RunbaseError as error:
        raise click.ClickException(error.message) from None
    db.session.commit()
    click.echo(f"Created {user.email} with {format_usd(micros)} of credit.")


@click.command("create-key")
@with_appcontext
@click.argument("email")
@click.option("--name", default="CLI key", help="A name to recognise the key by.")
@needs_schema
def create_key(email: str, name: str):
    """Create an API key and print it (alone, so scripts can capture it)."""
    user = _user_or_fail(email)
    _key, full_key = keys.create_key(db.session, user.id, name)
    db.session.commit()
    click.echo(full_key)


@click.command("add-credit")
@with_appcontext
@click.argument("email")
@click.argument("usd")
@click.option("--note", default=None, help="Why, for the ledger.")
@needs_schema
def add_credit(email: str, usd: str, note: str | None):
    """Add (or, negative, remove) credit: a ledger grant or adjustment."""
    user = _user_or_fail(email)
    micros = _dollars(usd, "USD")
    try:
        # The same service as the admin credit page: positive grants, negative adjusts.
        entry = billing.operator_credit(db.session, user.id, micros, adjust=micros < 0,
                                        note=note or "CLI")
    except RunbaseError as error:
        raise click.ClickException(error.message) from None
    db.session.commit()
    click.echo(f"Balance of {user.email}: {format_usd(entry.balance_after_micros)}.")


@click.command("set-admin")
@with_appcontext
@click.argument("email")
@click.option("--revoke", is_flag=True, help="Take administrator rights away instead.")
@needs_schema
def set_admin(email: str, revoke: bool):
    """Make an existing account an administrator (admin pages such as /admin/credit)."""
    user = _user_or_fail(email)
    user.is_admin = not revoke
    db.session.commit()
    click.echo(f"{user.email} is {'no longer' if revoke else 'now'} an administrator.")


@click.command("worker")
@with_appcontext
@click.option("--threads", type=int, default=None, help="Parallel provider calls.")
@needs_schema
def worker(threads: int | None):
    """Run a standalone worker until SIGTERM or Ctrl+C, then stop gracefully: calls in
    progress get RUNBASE_SHUTDOWN_GRACE_SECONDS to finish, unfinished runs are given back
    to other workers at once, and the process exits 0 (worker/shutdown.py)."""
    from . import metrics
    from .worker import Worker
    from .worker.shutdown import drain, exit_now, on_stop_signals

    app = current_app._get_current_object()
    stopping = threading.Event()
    on_stop_signals(stopping.set)
    running = Worker(app, threads=threads, standalone=True).start()
    metrics.track_worker(running)
    address = app.config["WORKER_METRICS_ADDRESS"]
    if address:  # this worker's own metrics (provider requests, slots): README
        server = metrics.serve_worker_metrics(address, app.config["METRICS_TOKEN"])
        click.echo(f"Metrics on http://{address[0]}:{server.server_port}/metrics")
    click.echo(f"Worker {running.owner} running; Ctrl+C to stop.")
    stopping.wait()
    grace = app.config["SHUTDOWN_GRACE_SECONDS"]
    click.echo(f"Stopping: up to {grace:g} s for calls in progress (again to quit now).")
    given_back = drain(running, grace)
    click.echo(f"Worker {running.owner} stopped; {len(given_back)} run(s) given back.")
    exit_now(0)


@click.command("copy-files-to-storage")
@with_appcontext
@click.option("--from", "source", default=None,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Directory of stored files to copy (default: the data dir's files/).")
def copy_files_to_storage(source: Path | None):
    """Copy a local file store into the configured storage (RUNBASE_STORAGE_URL), e.g.
    when moving to S3. Safe to re-run: a file already there with the same size is skipped.
    (No tables are read: every stored file in the directory is copied.)"""
    app = current_app._get_current_object()
    target = state.storage(app)
    source = (source or Path(app.config["DATA_DIR"]) / "files").resolve()
    if isinstance(target, LocalStorage) and target.root.resolve() == source:
        raise click.ClickException(
            f"{source} is the configured storage itself: set RUNBASE_STORAGE_URL to where "
            "the files should go (e.g. s3://bucket/prefix), or pass --from DIR.")
    copied = skipped = 0
    for path in sorted(source.iterdir()):
        if not (SAFE_NAME.match(path.name) and path.is_file()):
            continue  # temp files of an interrupted write, anything we did not store
        if target.size(path.name) == path.stat().st_size:
            skipped += 1
            continue
        try:
            target.save(path.name, path.read_bytes())
        except Exception as error:  # noqa: BLE001 - say which file, then stop
            raise click.ClickException(
                f"Copying {path.name} failed ({type(error).__name__}: {error}); copied "
                f"{copied} file(s) before it. Run the command again to go on.") from None
        copied += 1
    click.echo(f"Copied {copied} file(s) to {target.location}; skipped {skipped} already there.")


def init_app(app: Flask) -> None:
    """Register the commands."""
    app.cli.add_command(db_group)
    for cmd in (create_user, create_key, add_credit, set_admin, worker, copy_files_to_storage):
        app.cli.add_command(cmd)
