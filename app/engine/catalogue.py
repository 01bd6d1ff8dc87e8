"""The rule catalogue as implemented: every rule family module declares RULES (list of RuleSpec)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RuleSpec:
    id: str  # "L-2"
    title: str  # "Bilirubin > 1.5 x ULN with AST/ALT > 2.5 x ULN"
    decisions: tuple[str, ...]  # DecisionCode values it can produce
    citations: tuple[str, ...]  # ("SmPC 4.2 Table 3", "USPI 2.3 Table 3")
    labels: tuple[str, ...] = ("EU", "US")  # labels under which it applies
