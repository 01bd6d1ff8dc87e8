"""Governance report for a pharmacy and therapeutics committee: per rule, cards shown, accepted,
overridden and why (`besponsa-cds report`, `GET /governance/report`)."""

from __future__ import annotations

import json
from typing import Any

from app.storage.store import CardStore


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "-"


def render_text(report: dict[str, Any]) -> str:
    t = report["totals"]
    lines = [
        "besponsa-cds governance report",
        f"Cards shown: {t['cards']}  accepted: {t['accepted']}  overridden: {t['overridden']}  "
        f"no feedback: {t['noFeedback']}  (feedback messages stored: {t['feedbackReceived']})",
        "",
    ]
    header = ("Rule", "Shown", "Accepted", "Overridden", "No feedback", "Override rate", "Decisions")
    rows = [header]
    for r in report["rules"]:
        answered = r["accepted"] + r["overridden"]
        decisions = ", ".join(f"{k} {v}" for k, v in r["decisions"].items())
        rows.append((r["rule"], str(r["shown"]), str(r["accepted"]), str(r["overridden"]),
                     str(r["noFeedback"]), _pct(r["overridden"], answered), decisions))
    if len(rows) == 1:
        lines.append("No cards recorded yet.")
        return "\n".join(lines) + "\n"
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for n, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:-1], widths[1:-1])]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    reasons = [(r["rule"], x) for r in report["rules"] for x in r["overrideReasons"]]
    without = [(r["rule"], r["overriddenWithoutReason"]) for r in report["rules"]
               if r["overriddenWithoutReason"]]
    if reasons or without:
        lines += ["", "Override reasons"]
        for rule, x in reasons:
            lines.append(f"  {rule:<6} {x['count']:>4}  {x['display']} ({x['code']})")
        for rule, n in without:
            lines.append(f"  {rule:<6} {n:>4}  (no reason given)")
    return "\n".join(lines) + "\n"


def render_report(store: CardStore, fmt: str = "text") -> str:
    """The report as a text table (`fmt="text"`) or JSON (`fmt="json"`)."""
    if fmt not in ("text", "json"):
        raise ValueError(f"unknown report format {fmt!r}: use 'text' or 'json'")
    report = store.report()
    if fmt == "json":
        return json.dumps(report, indent=2, ensure_ascii=False) + "\n"
    return render_text(report)
