"""HTTP layer: FastAPI app, routes and error handling (depends on the engine, never the reverse)."""
