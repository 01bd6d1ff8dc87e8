"""Infusion-related reactions: I-1 (SmPC 4.2 Table 3, 4.4; USPI 2.3 Table 3, 5.4).

A prior infusion-related reaction to inotuzumab ozogamicin: severe or life-threatening ->
permanently discontinue; otherwise (or severity unknown) -> caution: premedicate (corticosteroid,
antipyretic, antihistamine) and observe for at least 1 hour after the infusion.
"""

from __future__ import annotations

from app.engine.catalogue import RuleSpec
from app.engine.context import RuleContext
from app.engine.decisions import Decision, DecisionCode
from app.engine.rules.decision_text import cite, d, make, ref_evidence
from app.engine.text import plural

RULES: list[RuleSpec] = [
    RuleSpec("I-1", "Prior infusion-related reaction to inotuzumab ozogamicin",
             ("discontinue", "caution"),
             ("SmPC 4.2 Table 3", "SmPC 4.4", "USPI 2.3 Table 3", "USPI 5.4")),
]

SEVERE = {"severe", "life-threatening"}


def check_infusion(ctx: RuleContext) -> list[Decision]:
    if ctx.facts.draft is None:
        return []
    reactions = [r for r in ctx.facts.reactions if r.kind == "infusion-reaction"]
    if not reactions:
        return []
    cites = cite(ctx, ("SmPC 4.2 Table 3", "SmPC 4.4"), ("USPI 2.3 Table 3", "USPI 5.4"))
    ev = tuple(ref_evidence("infusion-reaction", r.reference, r.display or "infusion reaction",
                            r.recorded, note=f"severity {r.severity or 'unknown'}")
               for r in reactions)
    severe = [r for r in reactions if r.severity in SEVERE]
    if severe:
        r = severe[0]
        return [make(
            ctx, DecisionCode.DISCONTINUE, ("I-1",), cites,
            f"Discontinue: {r.severity} infusion-related reaction to inotuzumab ozogamicin on "
            f"{d(r.recorded)}",
            what=f"A **{r.severity}** infusion-related reaction to inotuzumab ozogamicin is on "
                 "record. For severe or life-threatening infusion reactions the label requires "
                 "**permanent discontinuation**.",
            evidence=ev, critical=True,
            override_reasons=("clinical-judgement-documented",),
        )]
    unknown = any(r.severity is None for r in reactions)
    h = ctx.policy.observe_after_infusion_hours
    return [make(
        ctx, DecisionCode.CAUTION, ("I-1",), cites,
        f"Prior infusion reaction ({'severity unknown' if unknown else reactions[-1].severity}): "
        f"premedicate and observe >= {h:g} h after the infusion",
        what="A prior infusion-related reaction to inotuzumab ozogamicin is on record. Premedicate "
             "with a corticosteroid, antipyretic and antihistamine; monitor closely during and for "
             f"at least {plural(h, 'hour')} after the infusion. If a reaction occurs, interrupt the "
             "infusion and treat; consider stopping the infusion or giving steroids and "
             "antihistamines depending on severity.",
        evidence=ev,
        notes=["Severity is not recorded: if the reaction was severe or life-threatening, "
               "BESPONSA must be permanently discontinued."] if unknown else [],
        suggest_premedication=True,
    )]
