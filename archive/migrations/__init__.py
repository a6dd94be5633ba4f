"""The archive's Alembic environment (env.py) and its revisions (versions/)."""
