"""The pure dose-modification engine: facts and `now` in, decisions out. No I/O, no clock."""

from app.engine.evaluate import evaluate
from app.engine.next_dose import evaluate_next_dose

__all__ = ["evaluate", "evaluate_next_dose"]
