"""The schema's alembic migrations (`versions/`)."""

# The newest revision: a database stored at it needs no upgrade, and start-up
# checks that without loading alembic. tests/test_migrations.py holds it to
# alembic's own head, so a new migration that does not move it fails there.
HEAD = "0014"
