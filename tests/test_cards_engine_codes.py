"""Every override-reason code the engine can emit is a code of the service's code system, so no
reason the engine chose is dropped from a card."""

from __future__ import annotations

import ast
from pathlib import Path

from app import overrides

ENGINE = Path(__file__).resolve().parents[1] / "app" / "engine"


def _engine_override_codes() -> set[str]:
    """String literals inside `override_reasons=` arguments and `*_reasons` helpers of the engine."""
    codes: set[str] = set()
    for path in ENGINE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            value = None
            if isinstance(node, ast.keyword) and node.arg in ("override_reasons", "overrides"):
                value = node.value
            elif isinstance(node, ast.FunctionDef) and "override" in node.name or (
                isinstance(node, ast.FunctionDef) and node.name.endswith("_reasons")
            ):
                value = node
            if value is None:
                continue
            for sub in ast.walk(value):
                if isinstance(sub, ast.Constant) and isinstance(sub.value, str) and "-" in sub.value \
                        and sub.value == sub.value.lower() and " " not in sub.value:
                    codes.add(sub.value)
    return codes


def test_engine_emits_override_codes():
    codes = _engine_override_codes()
    assert "interruption-not-due-to-toxicity" in codes and "gilbert-or-haemolysis" in codes


def test_every_engine_override_code_is_in_the_code_system():
    unknown = {c for c in _engine_override_codes() if not overrides.is_known(overrides.coding(c)["system"], c)}
    assert not unknown, f"engine override reasons missing from app/overrides.py: {sorted(unknown)}"
