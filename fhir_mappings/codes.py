"""Value-set membership by system|code, independent of any drug.

Value sets are reviewable CSV files with the columns
`value_set,system,code,display,match,status,note` (rows whose first cell starts with `#` are
comments). `match` is `exact` (default) or `prefix` (hierarchical systems such as ATC only).
Membership is by system + code, never by display (codes.md: "Match on system + code").

Product maps (`read_product_csv`, columns `system,code,tty,display,ingredient_system,
ingredient_code,ingredient,status,source`) say which ingredient a drug product is made of (RxNorm
SCD/SBD/GPCK/BPCK -> IN): `ValueSetIndex.add_products` puts each product in every value set its
ingredient is in, so value sets list ingredients and an EHR's product codes still match.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fhir_mappings.bounded import BoundedCache

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
ICD10PCS = "http://www.cms.gov/Medicare/Coding/ICD10"
CPT = "http://www.ama-assn.org/go/cpt"
NDC = "http://hl7.org/fhir/sid/ndc"
ATC = "http://www.whocc.no/atc"
CVX = "http://hl7.org/fhir/sid/cvx"
UCUM = "http://unitsofmeasure.org"
UNII = "http://fdasis.nlm.nih.gov"

# Other spellings of the same code systems seen in real data (OIDs from HL7 v3/C-CDA, Epic, Cerner).
SYSTEM_ALIASES: dict[str, str] = {
    "urn:oid:2.16.840.1.113883.6.1": LOINC,
    "https://loinc.org": LOINC,
    "http://loinc.org/": LOINC,
    "urn:oid:2.16.840.1.113883.6.96": SNOMED,
    "http://snomed.info/sct/": SNOMED,
    "https://snomed.info/sct": SNOMED,
    "urn:oid:2.16.840.1.113883.6.88": RXNORM,
    "http://www.nlm.nih.gov/research/umls/rxnorm/": RXNORM,
    "urn:oid:2.16.840.1.113883.6.90": ICD10CM,
    "http://hl7.org/fhir/sid/icd-10-cm/": ICD10CM,
    "urn:oid:2.16.840.1.113883.6.4": ICD10PCS,
    "http://www.icd10data.com/icd10pcs": ICD10PCS,
    "urn:oid:2.16.840.1.113883.6.12": CPT,
    "urn:oid:2.16.840.1.113883.6.69": NDC,
    "http://hl7.org/fhir/sid/ndc/": NDC,
    "urn:oid:2.16.840.1.113883.6.73": ATC,
    "http://www.whocc.no/atc/": ATC,
    "urn:oid:2.16.840.1.113883.12.292": CVX,
    "http://hl7.org/fhir/sid/cvx/": CVX,
    "urn:oid:2.16.840.1.113883.4.9": UNII,
    "http://fdasis.nlm.nih.gov/srs/unii": UNII,
}


def normalize_system(system: str | None) -> str:
    if not system:
        return ""
    s = system.strip()
    return SYSTEM_ALIASES.get(s, SYSTEM_ALIASES.get(s.lower(), s))


def normalize_ndc(code: str) -> str:
    """NDC to its 11-digit form when unambiguous (hyphenated 4-4-2, 5-3-2, 5-4-1 or 11 digits)."""
    c = code.strip()
    if "-" in c:
        parts = c.split("-")
        if len(parts) == 3 and all(p.isdigit() for p in parts):
            return parts[0].zfill(5) + parts[1].zfill(4) + parts[2].zfill(2)
        return c.replace("-", "")
    return c


def normalize_code(system: str, code: str) -> str:
    c = code.strip()
    if system == NDC:
        return normalize_ndc(c)
    if system == CVX:
        return c.lstrip("0") or "0"
    if system in (ICD10CM, ATC, ICD10PCS):
        return c.upper()
    return c


def coding_key(system: str | None, code: str | None) -> str | None:
    """'system|code' with aliases and code forms normalised; None when there is no code."""
    if not code or not isinstance(code, str):
        return None
    sys_ = normalize_system(system)
    return f"{sys_}|{normalize_code(sys_, code)}"


def codings(concept: Any) -> Iterator[dict[str, Any]]:
    """The codings of a CodeableConcept (tolerates a bare Coding or a list of concepts)."""
    if isinstance(concept, list):
        for c in concept:
            yield from codings(c)
        return
    if not isinstance(concept, dict):
        return
    cod = concept.get("coding")
    if isinstance(cod, list):
        for c in cod:
            if isinstance(c, dict):
                yield c
    elif "code" in concept and "system" in concept:  # a bare Coding where a concept is expected
        yield concept


def concept_text(concept: Any) -> str:
    """Display text of a CodeableConcept: text, else the first coding display."""
    if isinstance(concept, dict):
        if isinstance(concept.get("text"), str):
            return concept["text"]
        for c in codings(concept):
            if isinstance(c.get("display"), str):
                return c["display"]
    return ""


def concept_keys(concept: Any) -> list[str]:
    keys = []
    for c in codings(concept):
        k = coding_key_fast(c.get("system"), c.get("code"))
        if k:
            keys.append(k)
    return keys


_CACHED_CHARS = 256  # longer systems or codes are looked up uncached (cache entries stay small)
_CACHE_MAX = 8192
_coding_keys = BoundedCache(_CACHE_MAX)
_MISSING = object()


def coding_key_fast(system: Any, code: Any) -> str | None:
    """coding_key, cached (codes repeat across thousands of Observations)."""
    try:
        known = _coding_keys.get((system, code), _MISSING)
    except TypeError:  # unhashable junk in system/code
        return None
    if known is not _MISSING:
        return known
    key = coding_key(system if isinstance(system, str) else None, code)
    if not ((type(system) is str and len(system) > _CACHED_CHARS)
            or (type(code) is str and len(code) > _CACHED_CHARS)):
        _coding_keys.keep((system, code), key)
    return key


@dataclass(frozen=True)
class ValueSetRow:
    value_set: str
    system: str
    code: str
    display: str = ""
    match: str = "exact"
    status: str = "VERIFIED"
    note: str = ""


@dataclass(eq=False)  # hashed by identity: cached per loaded index
class ValueSetIndex:
    """system|code -> value sets; prefix rows (ATC classes) checked per system."""

    exact: dict[str, set[str]] = field(default_factory=dict)
    prefixes: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # system -> (prefix, vs)
    rows: list[ValueSetRow] = field(default_factory=list)
    _sets_of_key: BoundedCache = field(default_factory=lambda: BoundedCache(_CACHE_MAX), repr=False)  # memo

    def add(self, row: ValueSetRow) -> None:
        self._sets_of_key.clear()
        self.rows.append(row)
        system = normalize_system(row.system)
        if row.match == "prefix":
            self.prefixes.setdefault(system, []).append(
                (normalize_code(system, row.code), row.value_set)
            )
        else:
            key = coding_key(system, row.code)
            if key:
                self.exact.setdefault(key, set()).add(row.value_set)

    def add_products(self, products: Iterable[ProductRow]) -> int:
        """Each product joins the value sets of its ingredient (exact rows). Returns rows added."""
        added = 0
        for p in products:
            ingredient = coding_key(p.ingredient_system, p.ingredient_code)
            for vs in sorted(self.exact.get(ingredient, ())) if ingredient else ():
                self.add(ValueSetRow(vs, p.system, p.code, p.display, "exact", p.status,
                                     f"{p.tty} of {p.ingredient} ({p.source})"))
                added += 1
        return added

    def value_sets_of_key(self, key: str) -> frozenset[str]:
        known = self._sets_of_key.get(key)
        if known is not None:
            return known
        found = set(self.exact.get(key, ()))
        if self.prefixes:
            system, _, code = key.partition("|")
            for prefix, vs in self.prefixes.get(system, ()):
                if code.startswith(prefix):
                    found.add(vs)
        known = frozenset(found)
        if len(key) <= 2 * _CACHED_CHARS:  # keys repeat across a chart's resources
            self._sets_of_key.keep(key, known)
        return known

    def value_sets_of(self, concept: Any) -> frozenset[str]:
        """All value sets any coding of the CodeableConcept belongs to."""
        keys = concept_keys(concept)
        if len(keys) == 1:
            return self.value_sets_of_key(keys[0])
        found: set[str] = set()
        for key in keys:
            found |= self.value_sets_of_key(key)
        return frozenset(found)

    def codes(self, value_set: str, system: str | None = None) -> list[tuple[str, str]]:
        """(system, code) of the exact rows of a value set, in file order (for queries)."""
        out = []
        for r in self.rows:
            if r.value_set == value_set and r.match != "prefix":
                s = normalize_system(r.system)
                if system is None or s == system:
                    out.append((s, r.code))
        return out

    def keys_of(self, value_sets: Iterable[str]) -> frozenset[str]:
        wanted = set(value_sets)
        return frozenset(k for k, vs in self.exact.items() if vs & wanted)


@dataclass(frozen=True)
class ProductRow:
    """A drug product and one of its ingredients (RxNorm SCD/SBD/GPCK/BPCK -> IN)."""

    system: str
    code: str
    tty: str
    display: str
    ingredient_system: str
    ingredient_code: str
    ingredient: str
    status: str
    source: str


def read_product_csv(path: str | Path) -> list[ProductRow]:
    rows: list[ProductRow] = []
    with open(path, newline="", encoding="utf-8") as fh:
        for rec in csv.DictReader(fh):
            system = (rec.get("system") or "").strip()
            if not system or system.startswith("#"):
                continue
            vals = {k: (rec.get(k) or "").strip() for k in (
                "code", "tty", "display", "ingredient_system", "ingredient_code", "ingredient",
                "status", "source")}
            if not vals["code"] or not vals["ingredient_system"] or not vals["ingredient_code"]:
                raise ValueError(f"{path}: product row {system}|{vals['code']!r} lacks code or "
                                 "ingredient")
            rows.append(ProductRow(system, **vals))
    return rows


def read_value_set_csv(path: str | Path) -> list[ValueSetRow]:
    rows: list[ValueSetRow] = []
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        for rec in reader:
            vs = (rec.get("value_set") or "").strip()
            if not vs or vs.startswith("#"):
                continue
            system, code = (rec.get("system") or "").strip(), (rec.get("code") or "").strip()
            if not system or not code:
                raise ValueError(f"{path}: row for {vs!r} lacks system or code")
            match = (rec.get("match") or "exact").strip() or "exact"
            if match not in ("exact", "prefix"):
                raise ValueError(f"{path}: row {vs}|{code}: match must be exact or prefix")
            rows.append(
                ValueSetRow(
                    vs, system, code, (rec.get("display") or "").strip(), match,
                    (rec.get("status") or "").strip(), (rec.get("note") or "").strip(),
                )
            )
    return rows


def load_index(paths: Iterable[str | Path],
               product_paths: Iterable[str | Path] = ()) -> ValueSetIndex:
    """Value-set rows from `paths`, then products (of ingredients already loaded) from
    `product_paths`."""
    index = ValueSetIndex()
    for p in paths:
        for row in read_value_set_csv(p):
            index.add(row)
    for p in product_paths:
        index.add_products(read_product_csv(p))
    return index
