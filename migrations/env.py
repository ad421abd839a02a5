"""Alembic environment: migrations run on the engine the app hands over."""
from alembic import context

from runbase_web.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations() -> None:
    """Run migrations on the app's engine (online mode only: we always have one)."""
    engine = config.attributes["engine"]
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata,
                          render_as_batch=connection.dialect.name == "sqlite")
        with context.begin_transaction():
            context.run_migrations()


run_migrations()
