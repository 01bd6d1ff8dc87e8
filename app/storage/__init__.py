"""Card and feedback store (SQLAlchemy 2.x + Alembic): SQLite by default, PostgreSQL by URL."""

from app.storage.store import CardStore, FeedbackRejected, FeedbackResult, open_store

__all__ = ["CardStore", "FeedbackRejected", "FeedbackResult", "open_store"]
