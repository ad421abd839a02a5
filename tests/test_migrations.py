"""The Alembic migrations build exactly the schema the models describe, on both backends."""
from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from runbase_web.cli import alembic_config, script_head, upgrade_database
from runbase_web.extensions import db
from runbase_web.models import Base


def test_migrated_schema_matches_the_models(app):
    engine = db.state(app).engine
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": False})
        differences = compare_metadata(context, Base.metadata)
    assert differences == []


def test_the_quick_head_check_agrees_with_alembic(app):
    script = ScriptDirectory.from_config(alembic_config(app))
    assert script_head() == script.get_current_head()


def test_an_older_database_is_still_upgraded(app):
    with app.app_context():
        command.downgrade(alembic_config(app), "-1")
    upgrade_database(app)
    with db.state(app).engine.connect() as connection:
        version = connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
    assert version == script_head()
