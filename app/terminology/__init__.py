"""Which codes mean what for inotuzumab ozogamicin: the value sets as reviewable CSV data.

- `value_sets.csv`: analytes (ids = `Analyte` values), the drug, conditions, procedures, response,
  medication classes, live vaccines. Every row says VERIFIED (codes.md) or UNVERIFIED (why).
- `qt_prolonging.csv`: the QT-prolonging drug list (rule Q-1), replaceable with
  BESPONSA_QT_DRUGS_FILE; BESPONSA_VALUE_SETS_FILE adds rows (local lab codes, MRD...).
- `rxnorm_products.csv`: RxNorm clinical/branded drugs and packs (SCD, SBD, GPCK, BPCK) -> their
  ingredient, so "ondansetron 4 MG Oral Tablet" (SCD 198052) is QT-prolonging because ondansetron
  (IN 26225) is. Value sets list ingredients; products follow whichever lists are loaded.

The generic membership mechanics live in `fhir_mappings.codes`.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from app.engine.facts import Analyte
from fhir_mappings.codes import ATC, ValueSetIndex, codings, concept_keys, concept_text, load_index

HERE = Path(__file__).parent
VALUE_SETS_CSV = HERE / "value_sets.csv"
QT_DRUGS_CSV = HERE / "qt_prolonging.csv"
PRODUCTS_CSV = HERE / "rxnorm_products.csv"

DRUG = "inotuzumab-ozogamicin"
# Text match: last resort for the drug only (never for labs or conditions).
DRUG_TEXT_TERMS = ("inotuzumab", "besponsa")

CONDITION_CONCEPTS = frozenset({
    "vod-sos", "severe-liver-toxicity", "gilbert-syndrome", "haemolysis", "cirrhosis",
    "nodular-regenerative-hyperplasia", "active-hepatitis", "liver-disease", "b-all", "pregnancy",
    "breastfeeding", "tumour-lysis", "prior-hsct", "hsct-planned", "all-in-remission",
})
PROCEDURE_CONCEPTS = frozenset({"hsct", "platelet-transfusion"})
MEDICATION_CONCEPTS = frozenset({
    "qt-prolonging", "live-vaccine", "corticosteroid", "antipyretic", "antihistamine",
    "uric-acid-lowering", "alkylating-agent", "hydroxyurea",
})
ANALYTE_IDS = frozenset(a.value for a in Analyte)

# Analytes measured in mass or substance concentration: the substance for molar conversion.
SUBSTANCE: dict[Analyte, str] = {
    Analyte.BILIRUBIN: "bilirubin",
    Analyte.BILIRUBIN_INDIRECT: "bilirubin",
    Analyte.CREATININE: "creatinine",
    Analyte.MAGNESIUM: "magnesium",
    Analyte.CALCIUM: "calcium",
    Analyte.POTASSIUM: "potassium",
}

# QTc correction by LOINC code (codes.md section 2); 8636-3 states no formula.
QTC_METHODS: dict[str, str | None] = {
    "http://loinc.org|76634-5": "QTcF",
    "http://loinc.org|76635-2": "QTcB",
    "http://loinc.org|8636-3": None,
}


@lru_cache(maxsize=4)
def _load(qt_file: str | None, extra_file: str | None) -> ValueSetIndex:
    paths: list[str | Path] = [VALUE_SETS_CSV, qt_file or QT_DRUGS_CSV]
    if extra_file:
        paths.append(extra_file)
    return load_index(paths, [PRODUCTS_CSV])


def terminology(qt_file: str | None = None, extra_file: str | None = None) -> ValueSetIndex:
    """The value-set index (cached). Without arguments, from settings (BESPONSA_QT_DRUGS_FILE,
    BESPONSA_VALUE_SETS_FILE)."""
    if qt_file is None and extra_file is None:
        from app.settings import get_settings

        s = get_settings()
        qt_file, extra_file = s.qt_drugs_file, s.value_sets_file
    return _load(qt_file, extra_file)


@lru_cache(maxsize=8)
def analyte_keys(index: ValueSetIndex) -> dict[str, Analyte]:
    """system|code -> Analyte for every analyte code (for fast filtering of raw Observations)."""
    out: dict[str, Analyte] = {}
    for key, sets in index.exact.items():
        for vs in sets:
            if vs in ANALYTE_IDS:
                out[key] = Analyte(vs)
    return out


def is_drug(concept: Any, index: ValueSetIndex | None = None) -> bool:
    """True when a medication CodeableConcept is inotuzumab ozogamicin: by code (RxNorm, NDC, ATC
    incl. the pre-2022 L01XC26, UNII), else by text/display as a last resort."""
    if concept is None:
        return False
    idx = index or terminology()
    return DRUG in idx.value_sets_of(concept) or named_as_drug(concept)


def named_as_drug(concept: Any) -> bool:
    """The last resort of `is_drug`: the concept's text or a coding's display names the drug."""
    if concept is None:
        return False
    texts = [concept_text(concept)] + [c.get("display") or "" for c in codings(concept)]
    return any(_names_drug_cached(t) if len(t) <= 256 else _names_drug(t)
               for t in texts if isinstance(t, str) and t)


@lru_cache(maxsize=4096)  # a chart repeats its medication texts on every administration
def _names_drug_cached(text: str) -> bool:
    return _names_drug(text)


def _names_drug(text: str) -> bool:
    lowered = text.lower()
    return any(w in lowered for w in DRUG_TEXT_TERMS)


def medication_concepts(concept: Any, index: ValueSetIndex | None = None) -> frozenset[str]:
    """Medication-class value sets of a medication concept ("qt-prolonging", "live-vaccine", ...)."""
    idx = index or terminology()
    return idx.value_sets_of(concept) & MEDICATION_CONCEPTS


def normalized_atc(concept: Any) -> list[str]:
    """ATC codes of a concept, with the obsolete L01XC26 normalised to L01FB01 (codes.md 10.1)."""
    return [
        "L01FB01" if k == f"{ATC}|L01XC26" else k.split("|", 1)[1]
        for k in concept_keys(concept)
        if k.startswith(ATC + "|")
    ]
