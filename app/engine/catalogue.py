"""The rule catalogue as implemented: every rule family module declares RULES (list of RuleSpec).

`format_catalogue(label)` prints it for `besponsa-cds rules`, so that a pharmacist can review the
rules without reading code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class RuleSpec:
    id: str  # "L-2"
    title: str  # "Bilirubin > 1.5 x ULN with AST/ALT > 2.5 x ULN"
    decisions: tuple[str, ...]  # DecisionCode values it can produce
    citations: tuple[str, ...]  # ("SmPC 4.2 Table 3", "USPI 2.3 Table 3")
    labels: tuple[str, ...] = ("EU", "US")  # labels under which it applies


_PREFIX_ORDER = "CDHLITEQVPR"  # catalogue sections: course, regimen, toxicity, eligibility, preparation


def _key(spec: RuleSpec) -> tuple[int, int, str]:
    m = re.fullmatch(r"([A-Z]+)-(\d+)", spec.id)
    if not m:
        return (len(_PREFIX_ORDER), 0, spec.id)
    prefix, n = m.group(1), int(m.group(2))
    pos = _PREFIX_ORDER.find(prefix)
    return (pos if pos >= 0 else len(_PREFIX_ORDER), n, spec.id)


def all_rules(label: str | None = None) -> list[RuleSpec]:
    """Every RuleSpec of every family (one per id), in catalogue order; only `label`'s if given."""
    from app.engine.rules import families

    seen: dict[str, RuleSpec] = {}
    for family in families():
        for spec in family.rules:
            seen.setdefault(spec.id, spec)
    specs = sorted(seen.values(), key=_key)
    if label:
        specs = [s for s in specs if label.upper() in s.labels]
    return specs


def _citations_for(spec: RuleSpec, label: str | None) -> tuple[str, ...]:
    if not label:
        return spec.citations
    prefix = "USPI" if label.upper() == "US" else "SmPC"
    own = tuple(c for c in spec.citations if c.startswith(prefix))
    return own or spec.citations


def format_catalogue(label: str | None = None) -> str:
    """A plain-text table: id, decision(s), citation(s), label(s), title."""
    specs = all_rules(label)
    rows = [("id", "decision(s)", "citation(s)", "label", "rule")]
    for s in specs:
        rows.append((s.id, ", ".join(s.decisions) or "(course)", "; ".join(_citations_for(s, label)),
                     "/".join(s.labels), s.title))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = []
    for i, r in enumerate(rows):
        lines.append("  ".join(r[j].ljust(widths[j]) for j in range(4)) + "  " + r[4])
        if i == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 4)
    title = f"BESPONSA rule catalogue ({label.upper()} label)" if label else \
        "BESPONSA rule catalogue (EU and US labels)"
    return f"{title}: {len(specs)} rules\n\n" + "\n".join(lines) + "\n"
