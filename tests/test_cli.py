"""Operator commands (README, "Operator commands") through Flask's CLI runner."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from alembic import command

from runbase_web.cli import alembic_config
from runbase_web.extensions import db
from runbase_web.services import accounts, keys

REPO = Path(__file__).resolve().parents[1]


def test_create_user_key_and_credit(app):
    cli = app.test_cli_runner()
    result = cli.invoke(args=["create-user", "ops@example.com", "--password", "s3cret-pass", "--credit", "2.50"])
    assert result.exit_code == 0, result.output
    result = cli.invoke(args=["create-key", "ops@example.com", "--name", "deploy"])
    assert result.exit_code == 0
    full_key = result.output.strip()
    assert full_key.startswith("sk-") and "\n" not in full_key and len(full_key) >= 35
    result = cli.invoke(args=["add-credit", "ops@example.com", "1.25", "--note", "thanks"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        user = accounts.find_user(db.session, "ops@example.com")
        assert user.balance_micros == 3_750_000
        assert keys.find_active_key(db.session, full_key).name == "deploy"


def test_create_user_defaults_to_the_signup_grant(app):
    result = app.test_cli_runner().invoke(args=["create-user", "new@example.com", "--password", "longenough"])
    assert result.exit_code == 0
    with app.app_context():
        assert accounts.find_user(db.session, "new@example.com").balance_micros == 1_000_000


def test_cli_errors_are_clear(app):
    cli = app.test_cli_runner()
    assert "No account" in cli.invoke(args=["create-key", "nobody@example.com"]).output
    assert "at least" in cli.invoke(args=["create-user", "a@example.com", "--password", "short"]).output
    assert cli.invoke(args=["add-credit", "nobody@example.com", "1"]).exit_code != 0
    cli.invoke(args=["create-user", "b@example.com", "--password", "longenough", "--credit", "0"])
    result = cli.invoke(args=["add-credit", "b@example.com", "--", "-1"])
    assert result.exit_code != 0 and "below zero" in result.output
    assert cli.invoke(args=["add-credit", "b@example.com", "1.0000001"]).exit_code != 0


def test_db_upgrade_command_in_a_fresh_data_dir(tmp_path):
    env = {"RUNBASE_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "flask", "--app", "app", "db", "upgrade"],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "runbase.db").exists() and (tmp_path / "secret_key").exists()


def test_commands_on_a_fresh_data_dir_say_to_migrate(tmp_path):
    # Before `db upgrade` there are no tables: one line saying what to run, not a traceback.
    env = {"RUNBASE_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "flask", "--app", "app", "create-user",
                             "ops@example.com", "--password", "long enough"],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "Error: The database has no tables yet: run `flask --app app db upgrade` first."]


def test_commands_refuse_a_database_behind_the_code(app):
    with app.app_context():
        command.downgrade(alembic_config(app), "-1")
    result = app.test_cli_runner().invoke(args=["create-key", "nobody@example.com"])
    assert result.exit_code == 1
    assert "db upgrade" in result.output and "Traceback" not in result.output
    with app.app_context():
        command.upgrade(alembic_config(app), "head")


def test_set_admin_grants_and_revokes(app, user):
    cli = app.test_cli_runner()
    result = cli.invoke(args=["set-admin", "ALICE@example.com"])
    assert result.exit_code == 0 and "alice@example.com is now an administrator." in result.output
    with app.app_context():
        assert accounts.find_user(db.session, user.email).is_admin
    result = cli.invoke(args=["set-admin", user.email, "--revoke"])
    assert result.exit_code == 0 and "no longer" in result.output
    with app.app_context():
        assert not accounts.find_user(db.session, user.email).is_admin
    result = cli.invoke(args=["set-admin", "nobody@example.com"])
    assert result.exit_code != 0 and "No account" in result.output


def test_create_user_admin_flag(app):
    result = app.test_cli_runner().invoke(args=["create-user", "boss@example.com", "--password", "longenough", "--admin"])
    assert result.exit_code == 0
    with app.app_context():
        assert accounts.find_user(db.session, "boss@example.com").is_admin


def test_add_credit_writes_grants_and_adjustments_with_notes(app, user):
    from runbase_web.models import LedgerEntry

    cli = app.test_cli_runner()
    assert cli.invoke(args=["add-credit", user.email, "2", "--note", "promo"]).exit_code == 0
    assert cli.invoke(args=["add-credit", user.email, "--", "-0.5"]).exit_code == 0
    assert "not be zero" in cli.invoke(args=["add-credit", user.email, "0"]).output
    with app.app_context():
        rows = [(e.kind, e.amount_micros, e.note) for e in
                db.session.query(LedgerEntry).filter_by(user_id=user.id).order_by(LedgerEntry.id)]
    assert rows[1:] == [("grant", 2_000_000, "promo"), ("adjust", -500_000, "CLI")]
