"""The pure dose-modification engine: facts and `now` in, decisions out. No I/O, no clock."""

from app.engine.evaluate import evaluate

__all__ = ["evaluate"]
