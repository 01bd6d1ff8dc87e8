"""Decisions -> CDS Hooks 2.0 cards that act (issue #5; card contract: clinical-rules.md section 6).

One card per Decision, in the engine's order. Each card carries `extension["besponsa-cds"]`
(decision, rules, citations, evidence, label), links to the label it cites, override reasons from
`app.overrides`, and suggestions built by `app.orders`:

- correct-dose / reduce-dose: `update` of the draft order with the dose in mg (R-1, D-4, T-3)
- hold / omit-dose / discontinue / contraindicated / consider-discontinue: `delete` of the draft
- obtain-data (or any decision with `needed_data`): `create` ServiceRequests
- `suggest_premedication` (E-4, I-1): `create` MedicationRequests from the premedication template

Completeness (issue #8): `extension["besponsa-cds"]` carries `notRead` ({domain: status} of every
data domain not read whole) and `notChecked` ({domain: why}); a `proceed` beside data that was not
checked is a `warning`, not `info`.

No member is ever null or empty (`Card.to_json()` drops None; this module never emits [] {} "").
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from app import orders, overrides
from app.engine.completeness import NOT_CHECKED, NOT_READ
from app.engine.decisions import Decision, DecisionCode, Evidence, Label
from app.engine.next_dose import NEXT_DOSE
from app.engine.text import clipped
from app.extensions import BASE
from cds_hooks.cards import Action, Card, Coding, Link, Source, Suggestion

log = logging.getLogger(__name__)

EXTENSION_KEY = "besponsa-cds"
DECISION_SYSTEM = f"{BASE}/CodeSystem/decision"

# Public label pages (stable, no deep anchors: the product-information documents have none).
EMA_EPAR_URL = "https://www.ema.europa.eu/en/medicines/human/EPAR/besponsa"
FDA_LABEL_URL = (
    "https://www.accessdata.fda.gov/scripts/cder/daf/index.cfm?event=overview.process&ApplNo=761040"
)
LABEL_URLS: dict[Label, str] = {Label.EU: EMA_EPAR_URL, Label.US: FDA_LABEL_URL}
SOURCE_LABELS: dict[Label, str] = {Label.EU: "besponsa-cds (EU SmPC)", Label.US: "besponsa-cds (US PI)"}

DECISION_DISPLAY: dict[DecisionCode, str] = {
    DecisionCode.DISCONTINUE: "Discontinue inotuzumab ozogamicin",
    DecisionCode.CONTRAINDICATED: "Contraindicated",
    DecisionCode.HOLD: "Hold dosing",
    DecisionCode.OMIT_DOSE: "Omit this dose",
    DecisionCode.REDUCE_DOSE: "Reduce the dose",
    DecisionCode.CORRECT_DOSE: "Correct the dose",
    DecisionCode.CONSIDER_DISCONTINUE: "Consider discontinuation",
    DecisionCode.OBTAIN_DATA: "Obtain missing data",
    DecisionCode.CAUTION: "Caution",
    DecisionCode.PROCEED: "Proceed",
}

_DOSE_CODES = (DecisionCode.CORRECT_DOSE, DecisionCode.REDUCE_DOSE)
# Decisions that act on the order take their rules' label exceptions as override reasons.
_RULE_DEFAULT_CODES = (DecisionCode.HOLD, DecisionCode.OMIT_DOSE, DecisionCode.REDUCE_DOSE,
                       DecisionCode.DISCONTINUE, DecisionCode.CONSIDER_DISCONTINUE,
                       DecisionCode.CONTRAINDICATED)
_CANCEL_LABELS: dict[DecisionCode, str] = {
    DecisionCode.HOLD: "Hold: cancel this order",
    DecisionCode.OMIT_DOSE: "Omit this dose: cancel this order",
    DecisionCode.DISCONTINUE: "Discontinue: cancel this order",
    DecisionCode.CONTRAINDICATED: "Contraindicated: cancel this order",
    DecisionCode.CONSIDER_DISCONTINUE: "Cancel this order (consider discontinuation)",
}


@dataclass(frozen=True)
class CardContext:
    patient_id: str
    now: datetime
    label: Label = Label.EU
    encounter_id: str | None = None
    draft_order: dict[str, Any] | None = None  # the raw draft inotuzumab MedicationRequest JSON
    premedication_file: str | None = None  # JSON template (app/data/premedication.json shape)
    smart_launch_url: str | None = None  # the treatment-timeline app (app.smart.launch_url)


def build_cards(decisions: list[Decision], ctx: CardContext) -> list[Card]:
    """One card per decision, in the given (engine) order."""
    return [build_card(d, ctx) for d in decisions]


def build_card(decision: Decision, ctx: CardContext) -> Card:
    label = decision.label  # the label the engine followed (ctx.label is the service default)
    detail = _detail(decision, label)
    try:
        suggestions = _suggestions(decision, ctx)
    except Exception as exc:  # noqa: BLE001 - a draft too malformed to rewrite: the card still goes out
        log.warning("suggestions not built for %s: %s", decision.code.value, type(exc).__name__)
        suggestions = []
        detail += ("\n\n**No suggestion could be built**: the draft order could not be rewritten "
                   "automatically. Change the order by hand as this card says.")
    card = Card(
        summary=_summary(decision.summary),
        indicator=indicator(decision),  # type: ignore[arg-type]
        detail=detail or None,
        source=Source(
            label=SOURCE_LABELS[label],
            url=LABEL_URLS[label],
            topic=Coding(
                system=DECISION_SYSTEM, code=decision.code.value,
                display=("Next dose: plan" if NEXT_DOSE in decision.extras
                         and decision.code is DecisionCode.PROCEED
                         else DECISION_DISPLAY[decision.code]),
            ),
        ),
        suggestions=suggestions or None,
        selectionBehavior=_selection_behavior(suggestions),
        overrideReasons=_override_reasons(decision) or None,
        links=_links(decision, label) + _smart_links(ctx),
        extension={EXTENSION_KEY: extension_payload(decision, label)},
    )
    return card


def indicator(decision: Decision) -> str:
    """The decision's indicator; a proceed beside data not checked warns (issue #8)."""
    if decision.code is DecisionCode.PROCEED and decision.extras.get(NOT_CHECKED):
        return "warning"
    return decision.indicator


def suggestion_uuids(card: Card) -> list[str]:
    return [s.uuid for s in card.suggestions or []]


# --------------------------------------------------------------------------- parts


def _summary(text: str) -> str:
    text = " ".join(text.split()) or "BESPONSA dose check"
    return text if len(text) <= 140 else text[:139].rstrip() + "…"


NEEDED_WORDS: dict[str, str] = {  # Decision.needed_data ids in words, for the first line
    "hepatic-panel": "liver tests", "cbc-differential": "a full blood count with differential",
    "ecg": "an ECG", "electrolytes": "electrolytes", "cd22": "CD22 expression",
    "height": "a height", "weight": "a weight", "disease-response": "a disease-response assessment",
    "pregnancy-test": "a pregnancy test",
}


def action_line(decision: Decision) -> str | None:
    """The detail's first line: what to do, in one sentence (the rest says why). None for
    patient-view decisions, whose detail already opens with the action on the next dose."""
    if NEXT_DOSE in decision.extras:
        return None
    code, dose = decision.code, decision.dose
    dose_text = (f"{orders.fmt_number(dose.mg)} mg ({orders.fmt_number(dose.mg_per_m2)} mg/m2 x "
                 f"BSA {orders.fmt_number(dose.bsa_m2, 2)} m2)") if dose else None
    if code is DecisionCode.HOLD:
        when = f"; re-order {_reorder_condition(decision)}" if (
            decision.hold_until or decision.recovery_criteria) else ""
        return f"**What to do: do not give this dose now{when}.**"
    if code in (DecisionCode.DISCONTINUE, DecisionCode.CONTRAINDICATED):
        return "**What to do: do not give inotuzumab ozogamicin; cancel this order.**"
    if code is DecisionCode.OMIT_DOSE:
        return "**What to do: omit this dose (cancel this order); do not make it up later.**"
    if code in _DOSE_CODES:
        return (f"**What to do: change the dose to {dose_text}.**" if dose_text else
                "**What to do: correct the dose before signing (see below).**")
    if code is DecisionCode.CONSIDER_DISCONTINUE:
        return "**What to do: consider stopping inotuzumab ozogamicin before this dose.**"
    if code is DecisionCode.OBTAIN_DATA:
        needed = [NEEDED_WORDS.get(n, n.replace("-", " ")) for n in decision.needed_data]
        needed = list(dict.fromkeys(needed))
        what = (", ".join(needed[:-1]) + " and " + needed[-1] if len(needed) > 1 else
                needed[0] if needed else "the missing data below")
        return f"**What to do: obtain {what} before giving the dose.**"
    if code is DecisionCode.CAUTION:
        return "**What to do: weigh this caution before signing; it does not block the order.**"
    if code is DecisionCode.PROCEED:
        return f"**What to do: give {dose_text}.**" if dose_text else None
    return None


def _detail(decision: Decision, label: Label) -> str:
    parts = [decision.detail.strip()] if decision.detail and decision.detail.strip() else []
    first = action_line(decision) if parts else None
    if first:
        parts.insert(0, first)
    if decision.code is DecisionCode.HOLD and (decision.hold_until or decision.recovery_criteria):
        said = " ".join(parts)
        if not all(x in said for x in _reorder_facts(decision)):  # the engine may have said it
            parts.append(f"**Re-order:** {_reorder_condition(decision)}.")
    if decision.needed_data:
        _, unknown = orders.order_groups(decision.needed_data)
        if unknown:
            parts.append(f"No order suggested for (obtain manually): {', '.join(unknown)}.")
    if decision.inferred:
        parts.append(
            "The interruption was *inferred* from administration dates (C-4). If it was not due to "
            "toxicity, override with “Interruption not due to toxicity”."
        )
    if decision.citations and "source:" not in " ".join(parts).lower():
        doc = "EU SmPC" if label is Label.EU else "US Prescribing Information"
        parts.append(f"Source: {'; '.join(decision.citations)} ([{doc}]({LABEL_URLS[label]})).")
    return "\n\n".join(parts)


def _reorder_facts(decision: Decision) -> list[str]:
    facts = [decision.hold_until.isoformat()] if decision.hold_until else []
    return facts + ([decision.recovery_criteria] if decision.recovery_criteria else [])


def _reorder_condition(decision: Decision) -> str:
    bits = []
    if decision.hold_until:
        bits.append(f"on or after {decision.hold_until.isoformat()}")
    if decision.recovery_criteria:
        bits.append(f"when {decision.recovery_criteria}")
    return " and ".join(bits)


def _links(decision: Decision, label: Label) -> list[Link]:
    eu = [c for c in decision.citations if c.upper().startswith(("SMPC", "EU"))]
    us = [c for c in decision.citations if c.upper().startswith(("USPI", "US", "PI"))]
    if not eu and not us:
        (eu if label is Label.EU else us).append("product information")
    links = []
    if eu:
        links.append(Link(label=f"EU SmPC (EMA): {', '.join(eu)}", url=EMA_EPAR_URL))
    if us:
        links.append(Link(label=f"US Prescribing Information (FDA): {', '.join(us)}", url=FDA_LABEL_URL))
    return links


def _smart_links(ctx: CardContext) -> list[Link]:
    """The treatment timeline, a SMART app the EHR launches with iss + launch (CDS Hooks 2.0 Link)."""
    if not ctx.smart_launch_url:
        return []
    return [Link(label="Treatment timeline (SMART app)", url=ctx.smart_launch_url, type="smart")]


def _override_reasons(decision: Decision) -> list[Coding]:
    if decision.code is DecisionCode.PROCEED:
        return []
    unknown = [c for c in decision.override_reasons if c not in overrides.REASONS]
    if unknown:
        log.warning("decision %s names unknown override reasons %s", decision.code, unknown)
    codes = overrides.reason_codes(
        decision.override_reasons,
        decision.rules if decision.code in _RULE_DEFAULT_CODES else (),
        inferred=decision.inferred,
        obtain_data=decision.code is DecisionCode.OBTAIN_DATA,
    )
    return [Coding(**overrides.coding(c)) for c in codes]


def _selection_behavior(suggestions: list[Suggestion]) -> str | None:
    if not suggestions:
        return None
    # Alternatives on the draft order itself (update / delete) exclude each other.
    if all(a.type in ("update", "delete") for s in suggestions for a in s.actions or []):
        return "at-most-one"
    return "any"


def _suggestions(decision: Decision, ctx: CardContext) -> list[Suggestion]:
    out: list[Suggestion] = []
    ref = orders.draft_reference(ctx.draft_order)
    if decision.code in _DOSE_CODES and decision.dose and ctx.draft_order and ref:
        d = decision.dose
        resource = orders.with_dose(
            ctx.draft_order, d, patient_id=ctx.patient_id, encounter_id=ctx.encounter_id
        )
        out.append(Suggestion(
            label=(f"Change dose to {orders.fmt_number(d.mg)} mg "
                   f"({orders.fmt_number(d.mg_per_m2)} mg/m2 x {orders.fmt_number(d.bsa_m2, 2)} m2)"),
            isRecommended=True,
            actions=[Action(type="update", description=f"Update {ref}: {orders.dose_text(d)}",
                            resource=resource)],
        ))
    elif decision.code in _CANCEL_LABELS and ref:
        label = _CANCEL_LABELS[decision.code]
        description = f"Cancel (delete) the draft order {ref}"
        if decision.code is DecisionCode.HOLD and (decision.hold_until or decision.recovery_criteria):
            condition = _reorder_condition(decision)
            label = f"{label}; re-order {condition}"
            description = f"{description}. Re-order {condition}"
        out.append(Suggestion(
            label=label,
            isRecommended=True if decision.code is not DecisionCode.CONSIDER_DISCONTINUE else None,
            actions=[Action(type="delete", description=description, resourceId=[ref])],
        ))
    if decision.needed_data:
        out.extend(_obtain_data_suggestions(decision, ctx))
    if decision.suggest_premedication:
        out.extend(_premedication_suggestions(ctx))
    return out


def _obtain_data_suggestions(decision: Decision, ctx: CardContext) -> list[Suggestion]:
    groups, unknown = orders.order_groups(decision.needed_data)
    if unknown:
        log.warning("no orderable for needed data %s (rules %s)", unknown, decision.rules)
    reason = f"besponsa-cds {decision.code.value} ({', '.join(decision.rules)}): {'; '.join(decision.citations)}"
    out = []
    for group in groups:
        actions = [
            Action(
                type="create",
                description=f"Order {item.text}",
                resource=orders.service_request(
                    item, patient_id=ctx.patient_id, encounter_id=ctx.encounter_id, now=ctx.now,
                    reason=reason.rstrip(": "),
                ),
            )
            for item in group.orderables
        ]
        out.append(Suggestion(label=f"Order {group.label}", isRecommended=True, actions=actions))
    return out


def _premedication_suggestions(ctx: CardContext) -> list[Suggestion]:
    template = orders.load_premedication(ctx.premedication_file)
    requests = orders.premedication_requests(
        patient_id=ctx.patient_id, encounter_id=ctx.encounter_id, now=ctx.now, template=template
    )
    if not requests:
        return []
    actions = [
        Action(
            type="create",
            description=f"Order {role} premedication: {res['medicationCodeableConcept'].get('text') or role}",
            resource=res,
        )
        for role, res in requests
    ]
    roles = ", ".join(role for role, _ in requests)
    return [Suggestion(label=f"Order premedication ({roles})", isRecommended=True, actions=actions)]


# --------------------------------------------------------------------------- extension


def evidence_json(ev: Evidence) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(ev):
        v = getattr(ev, f.name)
        if v is None or v == "":
            continue
        out[f.name] = (v.isoformat() if isinstance(v, (date, datetime))
                       else clipped(v) if isinstance(v, str) else v)
    return out


def decision_fields(decision: Decision) -> dict[str, Any]:
    """Members the card extension and the SMART timeline document share, under the same names:
    when to re-order, what recovery to wait for, which data is needed, whether it was inferred."""
    out: dict[str, Any] = {}
    if decision.hold_until:
        out["holdUntil"] = decision.hold_until.isoformat()
    if decision.recovery_criteria:
        out["recoveryCriteria"] = decision.recovery_criteria
    if decision.needed_data:
        out["neededData"] = list(decision.needed_data)
    if decision.inferred:
        out["inferred"] = True
    return out


def extension_payload(decision: Decision, label: Label) -> dict[str, Any]:
    """`extension["besponsa-cds"]` (clinical-rules.md section 6). Empty members are omitted."""
    payload: dict[str, Any] = {
        "decision": decision.code.value,
        "rules": list(decision.rules),
        "citations": list(decision.citations),
        "evidence": [e for e in (evidence_json(ev) for ev in decision.evidence) if e],
        "label": label.value,
    }
    if decision.dose:
        payload["dose"] = {k: v for k, v in dataclasses.asdict(decision.dose).items()
                           if v is not None and v != ""}
    payload.update(decision_fields(decision))
    if decision.extras.get(NOT_READ):
        payload["notRead"] = dict(decision.extras[NOT_READ])
    if decision.extras.get(NOT_CHECKED):
        payload["notChecked"] = dict(decision.extras[NOT_CHECKED])
    next_dose = decision.extras.get(NEXT_DOSE)
    if next_dose is not None and hasattr(next_dose, "as_json"):  # patient-view (app.engine.next_dose)
        payload["nextDose"] = next_dose.as_json()
    return orders.prune(payload)
