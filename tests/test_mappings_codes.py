"""Value sets: membership by system|code (aliases, NDC/CVX forms, ATC prefixes) and the data files."""

from __future__ import annotations

import re

import pytest

from app.engine.facts import Analyte
from app.terminology import (
    CONDITION_CONCEPTS,
    MEDICATION_CONCEPTS,
    PROCEDURE_CONCEPTS,
    analyte_keys,
    is_drug,
    medication_concepts,
    normalized_atc,
    terminology,
)
from fhir_mappings.codes import coding_key, load_index, normalize_ndc

IDX = terminology()


def cc(system, code, display=None):
    d = {"system": system, "code": code}
    if display:
        d["display"] = display
    return {"coding": [d]}


def test_every_row_is_well_formed_and_reviewed():
    for row in IDX.rows:
        assert row.status in ("VERIFIED", "UNVERIFIED"), row
        if row.status == "UNVERIFIED":
            assert row.note, f"UNVERIFIED row without a reason: {row}"
        if row.system == "http://loinc.org":
            assert re.fullmatch(r"(\d{1,7}-\d|LA\d+-\d)", row.code), row
        if row.system == "http://snomed.info/sct":
            assert re.fullmatch(r"\d{6,18}", row.code), row


def test_every_analyte_but_mrd_has_codes():
    covered = set(analyte_keys(IDX).values())
    # MRD has no LOINC in codes.md: local codes are added with BESPONSA_VALUE_SETS_FILE.
    assert set(Analyte) - covered == {Analyte.MRD}


def test_known_wrong_codes_are_absent():
    # codes.md section 10: 38739001 is not VOD; 53711006 not haemolysis; 426263006 not TLS;
    # 17338001 inactive; 8601-7 is not QTc.
    for system, code in [
        ("http://snomed.info/sct", "38739001"), ("http://snomed.info/sct", "53711006"),
        ("http://snomed.info/sct", "426263006"), ("http://snomed.info/sct", "17338001"),
        ("http://loinc.org", "8601-7"),
    ]:
        assert IDX.value_sets_of(cc(system, code)) == frozenset(), code


@pytest.mark.parametrize(
    ("concept", "expected"),
    [
        (cc("http://snomed.info/sct", "65617004"), {"vod-sos", "liver-disease"}),
        (cc("http://hl7.org/fhir/sid/icd-10-cm", "K76.5"), {"vod-sos", "liver-disease"}),
        (cc("http://hl7.org/fhir/sid/icd-10-cm", "E80.4"), {"gilbert-syndrome"}),
        (cc("http://snomed.info/sct", "61261009"), {"haemolysis"}),
        (cc("http://hl7.org/fhir/sid/icd-10-cm", "k74.60"), {"cirrhosis", "liver-disease"}),
        (cc("http://hl7.org/fhir/sid/icd-10-cm", "B18.2"), {"active-hepatitis", "liver-disease"}),
        (cc("urn:oid:2.16.840.1.113883.6.96", "277571004"), {"b-all"}),  # SNOMED by OID
        (cc("http://hl7.org/fhir/sid/icd-10-cm", "C91.01"), {"b-all", "all-in-remission"}),
        (cc("http://snomed.info/sct", "77386006"), {"pregnancy"}),
        (cc("http://www.ama-assn.org/go/cpt", "38240"), {"hsct"}),
        (cc("http://www.cms.gov/Medicare/Coding/ICD10", "30233Y1"), {"hsct"}),
        (cc("http://snomed.info/sct", "12719002"), {"platelet-transfusion"}),
    ],
)
def test_condition_and_procedure_membership(concept, expected):
    assert IDX.value_sets_of(concept) & (CONDITION_CONCEPTS | PROCEDURE_CONCEPTS) == expected


@pytest.mark.parametrize(
    "concept",
    [
        cc("http://www.nlm.nih.gov/research/umls/rxnorm", "1942950"),
        cc("urn:oid:2.16.840.1.113883.6.88", "1942959"),
        cc("http://hl7.org/fhir/sid/ndc", "0008-0100-01"),
        cc("http://hl7.org/fhir/sid/ndc", "00008-0100-01"),
        cc("urn:oid:2.16.840.1.113883.6.69", "00008010001"),
        cc("http://www.whocc.no/atc", "L01FB01"),
        cc("http://www.whocc.no/atc", "L01XC26"),  # pre-2022 ATC
        {"text": "Inotuzumab ozogamicin 0.9 mg vial"},  # text: last resort, drug only
        {"coding": [{"system": "urn:local", "code": "X1", "display": "BESPONSA 0.9MG"}]},
    ],
)
def test_drug_detection(concept):
    assert is_drug(concept)


def test_other_drugs_are_not_inotuzumab():
    assert not is_drug(cc("http://www.nlm.nih.gov/research/umls/rxnorm", "3264", "dexamethasone"))
    assert not is_drug({"text": "gemtuzumab ozogamicin"})
    assert not is_drug(None)


def test_text_match_is_for_the_drug_only():
    # A condition named in text only is never matched (membership is by code).
    assert IDX.value_sets_of({"text": "veno-occlusive disease"}) == frozenset()


@pytest.mark.parametrize(
    ("concept", "expected"),
    [
        (cc("http://www.whocc.no/atc", "L01AB01"), {"alkylating-agent"}),  # busulfan via prefix L01A
        (cc("http://www.nlm.nih.gov/research/umls/rxnorm", "3002"), {"alkylating-agent"}),
        (cc("http://www.nlm.nih.gov/research/umls/rxnorm", "24698"), set()),  # fludarabine: not
        (cc("http://www.whocc.no/atc", "H02AB02"), {"corticosteroid"}),
        (cc("http://www.nlm.nih.gov/research/umls/rxnorm", "5552"), {"hydroxyurea"}),
        (cc("http://hl7.org/fhir/sid/cvx", "03"), {"live-vaccine"}),
        (cc("http://hl7.org/fhir/sid/cvx", "3"), {"live-vaccine"}),
        (cc("http://www.nlm.nih.gov/research/umls/rxnorm", "26225"), {"qt-prolonging"}),
    ],
)
def test_medication_classes(concept, expected):
    assert medication_concepts(concept) == expected
    assert expected <= MEDICATION_CONCEPTS


def test_ndc_forms_normalise_to_11_digits():
    assert normalize_ndc("0008-0100-01") == "00008010001"
    assert normalize_ndc("00008-100-01") == "00008010001"
    assert coding_key("urn:oid:2.16.840.1.113883.6.69", "0008-0100-01") == (
        "http://hl7.org/fhir/sid/ndc|00008010001"
    )


def test_obsolete_atc_normalised():
    assert normalized_atc(cc("http://www.whocc.no/atc", "L01XC26")) == ["L01FB01"]


def test_qt_list_is_replaceable(tmp_path):
    f = tmp_path / "qt.csv"
    f.write_text(
        "value_set,system,code,display,match,status,note\n"
        "qt-prolonging,http://www.nlm.nih.gov/research/umls/rxnorm,999999,test drug,exact,UNVERIFIED,test\n"
    )
    idx = terminology(qt_file=str(f))
    rx = "http://www.nlm.nih.gov/research/umls/rxnorm"
    assert medication_concepts(cc(rx, "999999"), idx) == {"qt-prolonging"}
    assert medication_concepts(cc(rx, "26225"), idx) == frozenset()  # ondansetron not in that list


def test_bad_csv_row_is_rejected(tmp_path):
    f = tmp_path / "bad.csv"
    f.write_text("value_set,system,code,display,match,status,note\nx,http://loinc.org,,,,VERIFIED,\n")
    with pytest.raises(ValueError, match="lacks system or code"):
        load_index([f])
