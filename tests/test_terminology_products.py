"""Drug codes as an EHR sends them (#10): ingredient (IN), clinical drug (SCD), branded drug (SBD)
and pack (GPCK/BPCK) RxNorm codes, and a Medication resource's ingredients."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

import pytest

from app import facts_builder
from app.terminology import PRODUCTS_CSV, is_drug, medication_concepts, terminology
from fhir_mappings.codes import RXNORM, read_product_csv
from fhir_mappings.references import ResourceIndex, medication_concept

NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


def rx(code: str, display: str = "") -> dict:
    return {"coding": [{"system": RXNORM, "code": code, **({"display": display} if display else {})}]}


@pytest.mark.parametrize("code, tty, concept", [
    ("26225", "IN", "qt-prolonging"),  # ondansetron
    ("198052", "SCD", "qt-prolonging"),  # ondansetron 4 MG Oral Tablet (the sandbox's code)
    ("310670", "SCD", "qt-prolonging"),  # haloperidol 0.5 MG Oral Tablet
    ("105392", "SBD", "corticosteroid"),  # dexamethasone 0.5 MG Oral Tablet [Decadron]
    ("1292457", "SCD", "live-vaccine"),  # varicella-zoster virus vaccine live (Oka-Merck)
    ("1292443", "SBD", "live-vaccine"),  # ProQuad (MMRV)
    ("313782", "SCD", "antipyretic"),  # acetaminophen 325 MG Oral Tablet (UNVERIFIED row)
])
def test_product_codes_belong_to_their_ingredient_value_set(code: str, tty: str, concept: str) -> None:
    assert concept in medication_concepts(rx(code))


def test_pack_codes_are_recognised() -> None:
    packs = [p for p in read_product_csv(PRODUCTS_CSV) if p.tty in ("GPCK", "BPCK")]
    assert packs
    for p in packs[:20]:
        assert medication_concepts(rx(p.code)) or is_drug(rx(p.code)), p


def test_drug_itself_by_clinical_and_branded_drug() -> None:
    assert is_drug(rx("1942954"))  # SCD
    assert is_drug(rx("1942959"))  # SBD [Besponsa]


def test_local_forms_are_no_premedication() -> None:
    # dexamethasone ophthalmic ointment (Maxitrol, SBD 208601) is not a systemic corticosteroid
    assert "corticosteroid" not in medication_concepts(rx("208601"))


def test_every_product_row_has_a_source_and_a_status() -> None:
    with open(PRODUCTS_CSV, newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if not r["system"].startswith("#")]
    assert len(rows) > 500
    for r in rows:
        assert r["status"] in ("VERIFIED", "UNVERIFIED") and r["source"], r
        assert r["tty"] in ("SCD", "SBD", "GPCK", "BPCK"), r


def test_a_replaced_qt_list_takes_its_products_along(tmp_path: Path) -> None:
    qt = tmp_path / "qt.csv"
    qt.write_text("value_set,system,code,display,match,status,note\n"
                  f"qt-prolonging,{RXNORM},5093,haloperidol,exact,UNVERIFIED,site list\n")
    idx = terminology(qt_file=str(qt))
    assert "qt-prolonging" in idx.value_sets_of(rx("310670"))  # haloperidol tablet
    assert "qt-prolonging" not in idx.value_sets_of(rx("198052"))  # ondansetron: not on this list


def test_contained_medication_is_read_through_its_ingredients() -> None:
    order = {
        "resourceType": "MedicationRequest", "id": "o1",
        "contained": [{"resourceType": "Medication", "id": "med",
                       "ingredient": [{"itemCodeableConcept": rx("26225", "ondansetron")}]}],
        "medicationReference": {"reference": "#med"},
    }
    cc, problem = medication_concept(order, ResourceIndex([order]))
    assert problem is None and "qt-prolonging" in medication_concepts(cc)
    assert cc["text"] == "ondansetron"


def test_referenced_medication_and_ingredient_reference() -> None:
    inner = {"resourceType": "Medication", "id": "ino", "code": rx("1942950")}
    product = {"resourceType": "Medication", "id": "kit", "code": {"text": "local compounding kit"},
               "ingredient": [{"itemReference": {"reference": "Medication/ino"}}]}
    order = {"resourceType": "MedicationRequest", "id": "o2",
             "medicationReference": {"reference": "Medication/kit"}}
    cc, _ = medication_concept(order, ResourceIndex([order, product, inner]))
    assert is_drug(cc)
    assert cc["text"] == "local compounding kit"


def test_facts_builder_classifies_a_medication_by_ingredient() -> None:
    med = {"resourceType": "Medication", "id": "m1", "code": {"text": "Zofran 4 mg tablet"},
           "ingredient": [{"itemCodeableConcept": rx("198052")}]}
    order = {"resourceType": "MedicationRequest", "id": "mr1", "status": "active", "intent": "order",
             "subject": {"reference": "Patient/p1"}, "medicationReference": {"reference": "Medication/m1"}}
    facts = facts_builder.build_facts("p1", [med, order], None, NOW)
    [m] = facts.medications
    assert "qt-prolonging" in m.concepts and m.display == "Zofran 4 mg tablet"
    # the same as a draft order for another drug (order-sign relevance)
    bundle = {"resourceType": "Bundle", "entry": [{"resource": {**order, "status": "draft",
              "contained": [{**med, "id": "c"}], "medicationReference": {"reference": "#c"}}}]}
    assert facts_builder.summarize_draft_orders(bundle).relevant
