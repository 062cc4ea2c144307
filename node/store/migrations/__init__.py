"""Alembic migrations of the local store (a package so that ``env.py`` ships with the node)."""
