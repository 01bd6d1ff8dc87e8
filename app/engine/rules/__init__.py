"""Rule families. Each module exposes `check_<module>(ctx: RuleContext) -> list[Decision]` and
`RULES: list[RuleSpec]` (app.engine.catalogue).

FAMILIES lists them in evaluation order: the course and regimen first (they set the dose), then
toxicity, eligibility and warnings, then preparation.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

from app.engine.catalogue import RuleSpec
from app.engine.context import RuleContext
from app.engine.decisions import Decision

FAMILIES: tuple[str, ...] = (
    "course_data",  # C-2, C-5 obtain-data
    "regimen",  # D-1..D-8
    "haematological",  # H-1..H-5
    "hepatic",  # L-1..L-3
    "infusion",  # I-1
    "interruption",  # T-1..T-4
    "eligibility",  # E-1..E-5
    "qt",
    "vod_risk",  # V-1
    "pregnancy",  # P-1, P-2
    "preparation",
)


@dataclass(frozen=True)
class Family:
    name: str
    check: Callable[[RuleContext], list[Decision]]
    rules: tuple[RuleSpec, ...]


def _load(name: str) -> ModuleType:
    return importlib.import_module(f"{__name__}.{name}")


# Development only: while rule families are being written, a family whose module does not exist
# yet is skipped. The shipped engine imports every family (False): a missing one is an error.
ALLOW_MISSING = False


def families() -> tuple[Family, ...]:
    """Every rule family, imported (a missing family is an error unless ALLOW_MISSING)."""
    out = []
    for name in FAMILIES:
        try:
            module = _load(name)
        except ModuleNotFoundError as exc:
            if ALLOW_MISSING and exc.name == f"{__name__}.{name}":
                continue
            raise
        out.append(Family(name, getattr(module, f"check_{name}"), tuple(module.RULES)))
    return tuple(out)
