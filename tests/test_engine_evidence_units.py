"""Evidence in the units the EHR sent, beside the canonical value (issue #8): a bilirubin sent
in umol/L is shown as sent and converted, never only as "mg/dL" beside its molar code."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from engine_factories import body, dose, draft, normal_labs, premedication_orders

from app.cards import evidence_json
from app.engine.decisions import DecisionCode as C
from app.engine.evaluate import evaluate
from app.engine.facts import Analyte
from app.facts_builder import build_facts

T = datetime(2026, 3, 2, 9, tzinfo=UTC)  # Cycle 1 Day 8
UCUM = "http://unitsofmeasure.org"


def _lab(oid, loinc, value, unit, when, high=None):
    r = {"resourceType": "Observation", "id": oid, "status": "final",
         "subject": {"reference": "Patient/p1"},
         "code": {"coding": [{"system": "http://loinc.org", "code": loinc}]},
         "effectiveDateTime": when.isoformat(),
         "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit}}
    if high is not None:
        r["referenceRange"] = [{"high": {"value": high, "unit": unit, "system": UCUM,
                                         "code": unit}}]
    return r


def _hepatic_facts():
    """Bilirubin 36 umol/L (ULN 20.5 umol/L, 1.76 x ULN) and AST 128 U/L (3.2 x ULN) the day
    before a Cycle 1 Day 8 dose: L-2 holds."""
    from dataclasses import replace

    yesterday = T - timedelta(days=1)
    resources = [_lab("bili", "14631-6", 36, "umol/L", yesterday, high=20.5),
                 _lab("ast", "1920-8", 128, "U/L", yesterday, high=40)]
    f = build_facts("p1", resources, None, T)
    others = [m for m in normal_labs(T - timedelta(days=9)) + normal_labs(yesterday)
              if m.analyte not in (Analyte.BILIRUBIN, Analyte.AST) or m.effective < yesterday]
    return replace(f, draft=draft(T, mg_per_m2=0.5),
                   doses_given=(dose(T - timedelta(days=7), mg_per_m2=0.8),),
                   measurements=tuple(sorted(f.measurements + tuple(others)
                                             + tuple(body(when=T - timedelta(days=8))),
                                             key=lambda m: m.effective)),
                   other_orders=tuple(premedication_orders()))


def test_bilirubin_sent_in_umol_is_shown_as_sent_and_converted():
    ds = evaluate(_hepatic_facts(), T)
    hold = [d for d in ds if d.code is C.HOLD and "L-2" in d.rules][0]
    [bili] = [e for e in hold.evidence if e.concept == Analyte.BILIRUBIN.value]
    assert bili.sent == "36 umol/L" and bili.unit == "mg/dL"
    assert abs(bili.value - 36 / 17.104) < 0.01 and abs(bili.uln - 20.5 / 17.104) < 0.01
    js = evidence_json(bili)
    assert js["sent"] == "36 umol/L" and js["code"].endswith("14631-6")
    assert "sent as 36 umol/L, converted" in hold.detail  # the card's evidence table
    # a result sent in the canonical unit is not repeated
    [ast] = [e for e in hold.evidence if e.concept == Analyte.AST.value]
    assert ast.sent is None


def test_weight_sent_in_pounds_keeps_pounds_beside_kg():
    from app.engine.facts import Measurement
    from app.engine.text import measured

    m = Measurement(Analyte.WEIGHT, 70.0, T, "Observation/w", original="154.3 [lb_av]")
    e = measured(m, note="Day 1 weight")
    assert e.sent == "154.3 [lb_av]" and e.value == 70.0 and e.unit == "kg"
    assert e.note == "Day 1 weight; sent as 154.3 [lb_av], converted"
