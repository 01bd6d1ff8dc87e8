"""Issue #8, property: whatever part of a chart is removed, truncated or made unreadable, the
answer either equals the whole chart's or names on its cards every domain not read; it never
offers a dose the whole chart would not have offered, nor one above the reduction level in force.

Charts come from tests/test_engine_properties.py (generated histories and label schedules) plus
findings in the other domains; faults are generated per data domain.
"""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import timedelta
from types import MappingProxyType

from engine_factories import condition, measurement, medication, procedure, reaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_engine_properties import histories, on_schedule

from app.engine import completeness
from app.engine.course import reconstruct_course
from app.engine.decisions import DecisionCode
from app.engine.evaluate import evaluate
from app.engine.facts import Analyte, Availability, ClinicalFacts, Domain, DomainStatus, PatientInfo
from app.engine.labs import domain_of
from app.engine.policy import Policy
from app.engine.regimen import expected_mg_per_m2

POLICY = Policy()
A = Availability
SETTINGS = settings(max_examples=int(os.environ.get("PROP_EXAMPLES", "200")), deadline=None,
                    database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

_PROC_TYPES = {"Procedure": Domain.PROCEDURES}


def _fact_domain(field: str, item) -> Domain | None:
    """The data domain a fact came from (mirrors app.prefetch_queries.KEY_DOMAINS)."""
    if field == "doses_given":
        return Domain.ADMINISTRATIONS
    if field == "measurements":
        return domain_of(item.analyte)
    if field == "responses":
        return Domain.DISEASE
    if field == "conditions":
        return Domain.CONDITIONS
    if field == "procedures":
        return Domain.PROCEDURES if item.resource_type == "Procedure" else Domain.SERVICE_REQUESTS
    if field == "reactions":
        return Domain.REACTIONS
    if field == "medications":
        return Domain.IMMUNIZATIONS if item.resource_type == "Immunization" else Domain.OTHER_MEDICATIONS
    return None


FIELDS = ("doses_given", "measurements", "responses", "conditions", "procedures", "reactions",
          "medications")


@st.composite
def other_findings(draw, when):
    """Findings in the non-dose domains that may hide a hold, a stop or a warning."""
    out: dict[str, list] = {"conditions": [], "procedures": [], "reactions": [], "medications": [],
                            "measurements": []}
    if draw(st.booleans()):
        out["reactions"].append(reaction(severity=draw(st.sampled_from(["mild", "severe"]))))
    if draw(st.booleans()):
        out["procedures"].append(procedure("platelet-transfusion", "completed",
                                           performed=when - timedelta(hours=30)))
        out["measurements"].append(measurement(Analyte.PLATELETS, 60, when - timedelta(hours=10)))
    if draw(st.booleans()):
        out["conditions"].append(condition(draw(st.sampled_from(["pregnancy", "vod-sos", "b-all"])),
                                           clinical_status=draw(st.sampled_from(["active", "remission"]))))
    if draw(st.booleans()):
        out["medications"].append(medication(["qt-prolonging"]))
    if draw(st.booleans()):
        out["medications"].append(medication(["live-vaccine"], status="completed",
                                             resource_type="Immunization", start=when - timedelta(days=3)))
    return out


@st.composite
def charts(draw):
    f, when = draw(st.one_of(histories(), on_schedule()))
    extra = draw(other_findings(when))
    f = replace(f, **{k: tuple(getattr(f, k)) + tuple(v) for k, v in extra.items()})
    f = replace(f, measurements=tuple(sorted(f.measurements, key=lambda m: m.effective)))
    return f, when


FAULTS = st.sampled_from(["none"] * 6 + ["truncate", "unreadable", "not-provided", "unsupported",
                                         "empty-but-partial"])


@st.composite
def faults(draw):
    """Per domain: what retrieval made of it."""
    return {d: draw(FAULTS) for d in Domain}


def degrade(whole: ClinicalFacts, plan: dict[Domain, str], draw_keep) -> ClinicalFacts:
    """The chart as retrieval would have read it under `plan`."""
    availability: dict[Domain, DomainStatus] = {}
    kept: dict[str, tuple] = {}
    for field in FIELDS:
        items = []
        for item in getattr(whole, field):
            fault = plan.get(_fact_domain(field, item), "none")
            if fault == "none" or (fault == "truncate" and draw_keep()):
                items.append(item)
        kept[field] = tuple(items)
    for domain, fault in plan.items():
        if fault == "none":
            continue
        availability[domain] = DomainStatus({
            "truncate": A.PARTIAL, "empty-but-partial": A.PARTIAL, "unreadable": A.UNREADABLE,
            "not-provided": A.NOT_PROVIDED, "unsupported": A.UNSUPPORTED}[fault], f"generated {fault}")
    patient = whole.patient if plan.get(Domain.PATIENT, "none") == "none" else PatientInfo(whole.patient.id)
    return replace(whole, patient=patient, availability=MappingProxyType(availability), **kept)


def _signature(ds):
    return [(d.code, d.rules, d.summary, d.dose) for d in ds]


def _ceiling(level: int, cycle: int) -> float:
    return max(x for n in (1, 2, 3) for cr in (False, True)
               if (x := expected_mg_per_m2(cycle, n, cr, level)) is not None)


@SETTINGS
@given(charts(), faults(), st.randoms(use_true_random=False))
def test_answer_equals_the_whole_charts_or_names_every_domain_not_read(chart, plan, rnd):
    whole, now = chart
    part = degrade(whole, plan, lambda: rnd.random() < 0.5)
    full_ds = evaluate(whole, now, POLICY)
    part_ds = evaluate(part, now, POLICY)
    not_read = set(part.not_read())

    # (1) equal to the whole chart's answer, or every card names every domain not read
    if _signature(part_ds) != _signature(full_ds):
        assert part_ds, f"answered nothing while {sorted(not_read)} were not read"
        for d in part_ds:
            named = set(d.extras.get(completeness.NOT_READ, {}))
            assert {x.value for x in not_read} <= named, (d.summary, sorted(not_read), named)

    # (2) never a dose suggestion the whole chart would not have offered, unless every domain not
    # read was merely not provided / not supported (the EHR's choice, not an error), none of them
    # sets the dose, and the card offering it names them as not checked
    offered = {(d.dose.mg_per_m2, d.dose.cycle, d.dose.day) for d in full_ds
               if d.dose is not None}
    for d in part_ds:
        if d.dose is not None and d.code is not DecisionCode.PROCEED \
                and (d.dose.mg_per_m2, d.dose.cycle, d.dose.day) not in offered:
            assert not_read, (d.summary, plan)
            assert not any(part.status(x).availability.failed for x in not_read), (d.summary, plan)
            assert not (not_read & set(completeness.DOSE_DECIDING)), (d.summary, plan)
            assert set(d.extras.get(completeness.NOT_CHECKED, {})) == {x.value for x in not_read}

    # (3) proceed only on dose-deciding data read whole; beside data not checked it says so
    for d in part_ds:
        if d.code is DecisionCode.PROCEED:
            deciding = set(completeness.DOSE_DECIDING)
            assert not (not_read & deciding), (sorted(not_read), d.summary)
            assert all(not part.status(x).availability.failed for x in not_read)
            if not_read:
                assert set(d.extras.get(completeness.NOT_CHECKED, {})) == {x.value for x in not_read}

    # (4) never a dose above the reduction level in force (the whole chart's course)
    if whole.draft is not None or whole.doses_given:
        level = reconstruct_course(whole, now, POLICY).reduction_level
        for d in part_ds:
            if d.dose is not None:
                assert d.dose.mg_per_m2 <= _ceiling(level, d.dose.cycle) + 1e-6, (d.summary, level)
