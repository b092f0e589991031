"""Alembic environment: crossdock always passes the connection in, never reads alembic.ini."""

from alembic import context

from crossdock.models import load_all

Base = load_all()

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
