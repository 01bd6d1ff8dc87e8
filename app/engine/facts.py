"""Clinical facts: the engine's only input (besides `now` and the policy).

These are plain, immutable values, already mapped from FHIR by `app.facts_builder` with the help of
`fhir_mappings` (codes, UCUM units, result picking). The engine never sees FHIR JSON, never does I/O,
never reads the clock. Every fact keeps the FHIR reference it came from ("Observation/123") so that
cards can cite their evidence.

Units are canonical (see CANONICAL_UNITS); the builder converts and drops (as a DataProblem) what it
cannot convert. Datetimes are timezone-aware.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from enum import StrEnum
from functools import cached_property
from types import MappingProxyType
from typing import Any


class Analyte(StrEnum):
    """Quantities the rules read. Values are stable ids used in value sets and evidence."""

    BILIRUBIN = "bilirubin-total"
    BILIRUBIN_INDIRECT = "bilirubin-indirect"
    AST = "ast"
    ALT = "alt"
    ALP = "alkaline-phosphatase"
    GGT = "ggt"
    AMYLASE = "amylase"
    LIPASE = "lipase"
    CREATININE = "creatinine"
    ANC = "anc"
    PLATELETS = "platelets"
    WBC = "wbc"
    PERIPHERAL_BLASTS = "peripheral-blasts"  # absolute count in blood
    MARROW_BLASTS = "marrow-blasts"  # percent of marrow nucleated cells
    MRD = "mrd"  # fraction of marrow nucleated cells (1e-4 = 0.01 %)
    CD22 = "cd22"  # percent of blasts CD22 positive
    POTASSIUM = "potassium"
    MAGNESIUM = "magnesium"
    CALCIUM = "calcium"
    QTC = "qtc"  # QTcF preferred; the builder records which correction in `method`
    HEIGHT = "height"
    WEIGHT = "weight"


CANONICAL_UNITS: dict[Analyte, str] = {
    Analyte.BILIRUBIN: "mg/dL",
    Analyte.BILIRUBIN_INDIRECT: "mg/dL",
    Analyte.AST: "U/L",
    Analyte.ALT: "U/L",
    Analyte.ALP: "U/L",
    Analyte.GGT: "U/L",
    Analyte.AMYLASE: "U/L",
    Analyte.LIPASE: "U/L",
    Analyte.CREATININE: "mg/dL",
    Analyte.ANC: "10*9/L",
    Analyte.PLATELETS: "10*9/L",
    Analyte.WBC: "10*9/L",
    Analyte.PERIPHERAL_BLASTS: "10*9/L",
    Analyte.MARROW_BLASTS: "%",
    Analyte.MRD: "1",
    Analyte.CD22: "%",
    Analyte.POTASSIUM: "mmol/L",
    Analyte.MAGNESIUM: "mmol/L",
    Analyte.CALCIUM: "mmol/L",
    Analyte.QTC: "ms",
    Analyte.HEIGHT: "cm",
    Analyte.WEIGHT: "kg",
}


@dataclass(frozen=True)
class Measurement:
    """One usable quantitative result, in the analyte's canonical unit."""

    analyte: Analyte
    value: float
    effective: datetime
    reference: str  # "Observation/123"
    unit: str = ""  # canonical unit; defaults to CANONICAL_UNITS[analyte]
    uln: float | None = None  # from referenceRange.high, converted to the canonical unit
    lln: float | None = None  # from referenceRange.low, converted
    comparator: str | None = None  # "<", "<=", ">", ">=" as sent; value is the bound
    status: str = "final"  # final | amended | corrected | preliminary
    code: str = ""  # "system|code" as sent, for evidence
    original: str = ""  # value and unit as sent ("36 umol/L"), for evidence
    method: str | None = None  # e.g. "QTcF", "QTcB"
    specimen: str | None = None

    def __post_init__(self) -> None:
        if not self.unit:
            object.__setattr__(self, "unit", CANONICAL_UNITS[self.analyte])

    @property
    def preliminary(self) -> bool:
        return self.status == "preliminary"


@dataclass(frozen=True)
class DataProblem:
    """Data that exists but could not be used, or could not be retrieved at all.

    concept: an Analyte value, or one of "patient", "draft-order", "medication-history",
    "conditions", "procedures", "medications", "reactions", "fhir-server".
    """

    concept: str
    reason: str  # human readable: "unknown unit 'mg/ml/h'", "FHIR server answered 401"
    reference: str | None = None
    effective: datetime | None = None


class Availability(StrEnum):
    """What the service knows about one data domain's data (design-notes "Completeness is a fact").

    "None on record" (EMPTY, or COMPLETE without the finding) and "could not be read"
    (UNREADABLE, PARTIAL) are different facts and read differently on the card."""

    COMPLETE = "complete"  # read whole
    EMPTY = "empty"  # read whole, nothing there (null prefetch, empty searchset)
    PARTIAL = "partial"  # page limit, other-origin next, budget spent mid-paging, a page failed
    UNREADABLE = "unreadable"  # 401/403/5xx, time-out, malformed, wrong resource type
    NOT_PROVIDED = "not-provided"  # absent prefetch key and no fhirServer to fetch it from
    UNSUPPORTED = "unsupported"  # the server has no such resource type (404 on the type, ...)

    @property
    def read_whole(self) -> bool:
        return self in (Availability.COMPLETE, Availability.EMPTY)

    @property
    def failed(self) -> bool:
        """An error: data exists (or may) but could not be read (whole)."""
        return self in (Availability.PARTIAL, Availability.UNREADABLE)


# Worst first: the status of a domain read from several keys is the worst of theirs.
AVAILABILITY_ORDER: tuple[Availability, ...] = (
    Availability.UNREADABLE, Availability.PARTIAL, Availability.NOT_PROVIDED,
    Availability.UNSUPPORTED, Availability.COMPLETE, Availability.EMPTY,
)


class Domain(StrEnum):
    """The data the rules read, one status each (prefetch keys map to these in
    app.prefetch_queries.KEY_DOMAINS)."""

    ADMINISTRATIONS = "administrations"  # inotuzumab ozogamicin doses given (C-1..C-4)
    LIVER_LABS = "liver-labs"  # liver tests and blood chemistry (L-2, L-3, Q-1 electrolytes)
    BLOOD_COUNTS = "blood-counts"  # ANC, platelets, WBC, blasts (H-1..H-4, E-3)
    HEIGHT_WEIGHT = "height-weight"  # BSA (D-5)
    ECG = "ecg"  # QTc
    DISEASE = "disease-response"  # response, CD22, MRD, pregnancy status (C-5, E-2, P-1)
    CONDITIONS = "conditions"  # VOD, liver disease, pregnancy, remission (L-1, E-1, P-1)
    PROCEDURES = "procedures"  # HSCT, platelet transfusions (C-6, H-3)
    SERVICE_REQUESTS = "service-requests"  # planned HSCT (C-6, D-7, V-1)
    OTHER_MEDICATIONS = "other-medications"  # QT drugs, premedication, conditioning (Q-1, E-4, V-1)
    REACTIONS = "infusion-reactions"  # AdverseEvent + AllergyIntolerance (I-1, E-1)
    IMMUNIZATIONS = "immunizations"  # live vaccines (P-2)
    PATIENT = "patient"  # age, sex (E-2, P-1, V-1)


DOMAIN_TEXT: dict[Domain, str] = {  # how a nurse reads the domain on a card
    Domain.ADMINISTRATIONS: "inotuzumab ozogamicin administration history",
    Domain.LIVER_LABS: "liver tests and blood chemistry",
    Domain.BLOOD_COUNTS: "blood counts",
    Domain.HEIGHT_WEIGHT: "height and weight",
    Domain.ECG: "ECG (QTc)",
    Domain.DISEASE: "disease assessments (response, CD22, MRD, pregnancy tests)",
    Domain.CONDITIONS: "conditions (VOD, liver disease, pregnancy)",
    Domain.PROCEDURES: "procedures (HSCT, platelet transfusions)",
    Domain.SERVICE_REQUESTS: "planned procedures (HSCT)",
    Domain.OTHER_MEDICATIONS: "other medications (QT-prolonging drugs, premedication)",
    Domain.REACTIONS: "infusion reactions and allergies",
    Domain.IMMUNIZATIONS: "vaccinations",
    Domain.PATIENT: "patient record (age, sex)",
}


@dataclass(frozen=True)
class DomainStatus:
    """A domain's availability and, unless read whole, why (for the card)."""

    availability: Availability
    reason: str = ""  # "FHIR server answered 503", "more results than the page limit allows"

    @property
    def read_whole(self) -> bool:
        return self.availability.read_whole

    @property
    def words(self) -> str:
        """'could not be read' - the wording on card summaries (the reason goes in the detail)."""
        return self.text().split(" (", 1)[0]

    def text(self) -> str:
        """'could not be read (FHIR server answered 503)' - the wording on cards."""
        words = {
            Availability.COMPLETE: "read",
            Availability.EMPTY: "none on record",
            Availability.PARTIAL: "only partly read",
            Availability.UNREADABLE: "could not be read",
            Availability.NOT_PROVIDED: "not provided by the EHR",
            Availability.UNSUPPORTED: "not supported by the FHIR server",
        }[self.availability]
        return f"{words} ({self.reason})" if self.reason and not self.read_whole else words


COMPLETE = DomainStatus(Availability.COMPLETE)


def worst(statuses: "list[DomainStatus] | tuple[DomainStatus, ...]") -> DomainStatus:
    """The combined status of a domain read from several keys: the worst, with every reason."""
    if not statuses:
        return COMPLETE
    ranked = sorted(statuses, key=lambda s: AVAILABILITY_ORDER.index(s.availability))
    top = ranked[0].availability
    reasons = list(dict.fromkeys(s.reason for s in ranked if s.availability is top and s.reason))
    return DomainStatus(top, "; ".join(reasons))


# Legacy `ClinicalFacts.unavailable` entries (resource types / prefetch keys) -> domains.
_LEGACY_DOMAINS: dict[str, tuple[Domain, ...]] = {
    "Observation": (Domain.LIVER_LABS, Domain.BLOOD_COUNTS, Domain.HEIGHT_WEIGHT, Domain.ECG,
                    Domain.DISEASE),
    "MedicationAdministration": (Domain.ADMINISTRATIONS,),
    "medication-history": (Domain.ADMINISTRATIONS,),
    "MedicationRequest": (Domain.OTHER_MEDICATIONS,),
    "Condition": (Domain.CONDITIONS,),
    "Procedure": (Domain.PROCEDURES,),
    "ServiceRequest": (Domain.SERVICE_REQUESTS,),
    "AdverseEvent": (Domain.REACTIONS,),
    "AllergyIntolerance": (Domain.REACTIONS,),
    "Immunization": (Domain.IMMUNIZATIONS,),
    "Patient": (Domain.PATIENT,),
}


@dataclass(frozen=True)
class PatientInfo:
    id: str
    birth_date: date | None = None
    gender: str | None = None  # FHIR administrative gender


@dataclass(frozen=True)
class CycleDay:
    """An explicit cycle/day stated on an order or administration (rule C-1)."""

    cycle: int
    day: int


@dataclass(frozen=True)
class DoseGiven:
    """A completed MedicationAdministration of inotuzumab ozogamicin."""

    reference: str
    given_at: datetime
    dose_mg: float | None = None
    dose_mg_per_m2: float | None = None
    explicit: CycleDay | None = None


@dataclass(frozen=True)
class DraftDose:
    """The draft (or re-signed) inotuzumab ozogamicin MedicationRequest being ordered."""

    reference: str  # "MedicationRequest/<id>"
    dose_date: datetime  # clinical-rules section 0 "dose date"
    dose_mg: float | None = None
    dose_mg_per_m2: float | None = None
    explicit: CycleDay | None = None
    status: str | None = None
    read_tolerantly: bool = False  # strict FHIR parsing failed; fields were read leniently
    problems: tuple[str, ...] = ()  # e.g. "dose has no unit"


@dataclass(frozen=True)
class OtherOrder:
    """Another order in draftOrders (not inotuzumab ozogamicin): QT drugs, live vaccines, premeds."""

    reference: str
    concepts: frozenset[str]  # value-set ids: "qt-prolonging", "live-vaccine", "corticosteroid", ...
    display: str = ""
    resource_type: str = "MedicationRequest"


@dataclass(frozen=True)
class ConditionFact:
    """A Condition that is not refuted or entered-in-error.

    concept: value-set id, e.g. "vod-sos", "severe-liver-toxicity", "gilbert-syndrome",
    "haemolysis", "cirrhosis", "nodular-regenerative-hyperplasia", "active-hepatitis",
    "liver-disease", "b-all", "pregnancy", "breastfeeding", "tumour-lysis".
    """

    concept: str
    reference: str
    clinical_status: str | None = None  # active | recurrence | relapse | inactive | remission | resolved
    verification_status: str | None = None  # confirmed | provisional | differential | unconfirmed
    onset: datetime | None = None
    recorded: datetime | None = None
    abatement: datetime | None = None
    severity: str | None = None  # mild | moderate | severe (from Condition.severity)
    display: str = ""

    @property
    def active(self) -> bool:
        return self.clinical_status in (None, "active", "recurrence", "relapse")


@dataclass(frozen=True)
class ProcedureFact:
    """Procedures, ServiceRequests and CarePlans by concept: "hsct", "platelet-transfusion", ...

    status is the resource's own status (Procedure: preparation | in-progress | completed | ...;
    ServiceRequest/CarePlan: draft | active | completed | revoked ...).
    """

    concept: str
    reference: str
    status: str
    resource_type: str = "Procedure"
    performed: datetime | None = None  # performed[x] start (Procedure) or occurrence (ServiceRequest)
    display: str = ""


@dataclass(frozen=True)
class ReactionFact:
    """A prior infusion-related or hypersensitivity reaction attributed to inotuzumab ozogamicin."""

    reference: str  # AdverseEvent/.. or AllergyIntolerance/..
    kind: str  # "infusion-reaction" | "hypersensitivity"
    severity: str | None  # mild | moderate | severe | life-threatening | None (unknown)
    recorded: datetime | None = None
    display: str = ""


@dataclass(frozen=True)
class MedicationFact:
    """Another medication (MedicationRequest, MedicationAdministration, MedicationStatement,
    Immunization) with the value-set concepts it belongs to."""

    reference: str
    concepts: frozenset[str]  # "qt-prolonging", "live-vaccine", "corticosteroid", "antipyretic",
    # "antihistamine", "uric-acid-lowering", "alkylating-agent", "hydroxyurea", ...
    status: str
    start: datetime | None = None
    end: datetime | None = None
    display: str = ""
    resource_type: str = "MedicationRequest"


@dataclass(frozen=True)
class ResponseFinding:
    """A recorded disease-response assessment (rule C-5 a/b).

    response: "CR" | "CRi" | "PR" | "SD" | "PD" | "relapse" | "remission" (Condition remission, b)
    """

    response: str
    effective: datetime | None
    reference: str
    mrd_negative: bool | None = None


@dataclass(frozen=True)
class ClinicalFacts:
    patient: PatientInfo
    draft: DraftDose | None = None
    other_orders: tuple[OtherOrder, ...] = ()
    doses_given: tuple[DoseGiven, ...] = ()  # sorted by given_at
    measurements: tuple[Measurement, ...] = ()  # sorted by effective
    conditions: tuple[ConditionFact, ...] = ()
    procedures: tuple[ProcedureFact, ...] = ()
    reactions: tuple[ReactionFact, ...] = ()
    medications: tuple[MedicationFact, ...] = ()
    responses: tuple[ResponseFinding, ...] = ()
    problems: tuple[DataProblem, ...] = ()
    # Legacy: data categories that could not be retrieved ("Observation", ...); read through
    # `status()`, which maps them to domains. New code sets `availability`.
    unavailable: frozenset[str] = field(default_factory=frozenset)
    # Per data domain: how it was read (retrieval decides). A domain not listed was read whole.
    availability: Mapping[Domain, DomainStatus] = field(default_factory=lambda: MappingProxyType({}))

    def status(self, domain: Domain) -> DomainStatus:
        """How `domain` was read: `availability`, else the legacy `unavailable` set, else complete."""
        own = self.availability.get(domain)
        if own is not None:
            return own
        if any(domain in _LEGACY_DOMAINS.get(name, ()) for name in self.unavailable):
            return DomainStatus(Availability.UNREADABLE)
        return COMPLETE

    def not_read(self) -> dict[Domain, DomainStatus]:
        """Every domain not read whole, with its status (in Domain order)."""
        out = {}
        for domain in Domain:
            st = self.status(domain)
            if not st.read_whole:
                out[domain] = st
        return out

    @cached_property
    def _series(self) -> dict[str, tuple[Measurement, ...]]:
        """Measurements by analyte, in `measurements` order (built once: rules ask many times)."""
        groups: dict[str, list[Measurement]] = {}
        for m in self.measurements:
            groups.setdefault(m.analyte, []).append(m)
        return {a: tuple(ms) for a, ms in groups.items()}

    def series(self, analyte: Analyte) -> tuple[Measurement, ...]:
        return self._series.get(analyte, ())

    def with_draft(self, draft: DraftDose | None, **changes: Any) -> ClinicalFacts:
        """These facts with another draft (and any other field but the measurements): the
        next-dose evaluation asks several; the measurements' grouping by analyte is kept, and so
        is the `shared_memo` when nothing else but the other draft orders changes."""
        if "measurements" in changes:
            raise ValueError("with_draft keeps the measurements")
        out = replace(self, draft=draft, **changes)
        out.__dict__["_series"] = self._series
        if set(changes) <= {"other_orders"}:
            out.__dict__["_shared_memo"] = self.shared_memo
        return out

    @property
    def shared_memo(self) -> dict[Any, Any]:
        """Results worked out from these facts, kept for them and for their `with_draft` copies
        (issue #11: patient-view reads the course of the same chart for several drafts). What is
        kept may depend on any field but `other_orders`; its key must name the draft, `now` and
        the policy when it depends on them."""
        return self.__dict__.setdefault("_shared_memo", {})

    def latest(
        self, analyte: Analyte, before: datetime, *, include_preliminary: bool = False
    ) -> Measurement | None:
        """Latest result at or before `before` (final/amended/corrected unless asked otherwise)."""
        best: Measurement | None = None
        for m in self.series(analyte):
            if m.effective > before:
                continue
            if m.preliminary and not include_preliminary:
                continue
            if best is None or m.effective >= best.effective:
                best = m
        return best

    def problems_for(self, concept: str) -> tuple[DataProblem, ...]:
        return tuple(p for p in self.problems if p.concept == concept)
