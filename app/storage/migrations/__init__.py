"""Alembic migrations of the card and feedback store (run by `open_store`, never by hand)."""
