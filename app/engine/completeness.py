"""Completeness gate (issue #8): what the engine may conclude from data it did not read whole.

One mechanism, applied by `app.engine.evaluate` to every rule family's output, reading
`ClinicalFacts.status(domain)` (retrieval decided it):

- Dose-deciding domains (administrations, liver tests, blood counts, height and weight, and the
  disease response where the dose depends on it) not read whole -> `obtain-data`; then no
  `proceed` and no decision offers a dose. Nor when any other domain could not be read: it may
  hide a stop (severe reaction, VOD), and no dose is proposed beside a stop.
- Administrations not read whole -> the course is unknown: no cycle, day or interruption is
  inferred from a part of the history (`unknown_course`).
- Other domains (transfusions, infusion reactions, pregnancy, HSCT plans, vaccines, QT drugs):
  an error (unreadable, partial) -> `obtain-data`; merely not provided or not supported ->
  "Not checked: <domain> (why)" on the cards, and a `proceed` beside it is a warning.

"Could not be read" is never worded as "none on record" (DomainStatus.text).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from app.engine.context import Course, RuleContext
from app.engine.decisions import Decision, DecisionCode, Evidence, Label
from app.engine.facts import DOMAIN_TEXT, Analyte, Availability, ClinicalFacts, Domain, DomainStatus
from app.engine.labs import domain_of
from app.engine.text import detail, summary

NOT_CHECKED = "not-checked"  # Decision.extras key: {domain: status text} of domains not looked at
NOT_READ = "not-read"  # Decision.extras key: {domain: availability} of every domain not read whole

# Domains whose data sets the dose: not read whole -> obtain-data, no proceed, no dose offered.
DOSE_DECIDING: tuple[Domain, ...] = (
    Domain.ADMINISTRATIONS, Domain.LIVER_LABS, Domain.BLOOD_COUNTS, Domain.HEIGHT_WEIGHT,
)

# The rules each domain feeds (catalogue ids), named on the card as not checked.
DOMAIN_RULES: dict[Domain, tuple[str, ...]] = {
    Domain.ADMINISTRATIONS: ("C-2", "C-3", "C-4", "D-4", "D-6", "T-1", "T-2", "T-3", "T-4"),
    Domain.LIVER_LABS: ("L-2", "L-3", "E-5", "Q-1"),
    Domain.BLOOD_COUNTS: ("H-2", "H-3", "H-4", "E-3", "E-5"),
    Domain.HEIGHT_WEIGHT: ("D-5", "R-1"),
    Domain.ECG: ("Q-1",),
    Domain.DISEASE: ("C-5", "D-2", "E-2", "P-1"),
    Domain.CONDITIONS: ("L-1", "E-1", "P-1"),
    Domain.PROCEDURES: ("C-6", "H-3", "V-1"),
    Domain.SERVICE_REQUESTS: ("C-6", "D-7", "V-1"),
    Domain.OTHER_MEDICATIONS: ("Q-1", "E-4", "V-1"),
    Domain.REACTIONS: ("I-1", "E-1"),
    Domain.IMMUNIZATIONS: ("P-2",),
    Domain.PATIENT: ("E-2", "P-1", "V-1"),
}


# Decision.needed_data ids (app/data/order_catalogue.json) -> the domain they would be read from;
# analyte ids map through app.engine.labs.domain_of.
NEEDED_DATA_DOMAIN: dict[str, Domain] = {
    "hepatic-panel": Domain.LIVER_LABS, "liver-tests": Domain.LIVER_LABS,
    "electrolytes": Domain.LIVER_LABS, "cbc-differential": Domain.BLOOD_COUNTS,
    "cbc": Domain.BLOOD_COUNTS, "ecg": Domain.ECG, "height": Domain.HEIGHT_WEIGHT,
    "weight": Domain.HEIGHT_WEIGHT, "height-weight": Domain.HEIGHT_WEIGHT,
    "cd22": Domain.DISEASE, "disease-response": Domain.DISEASE, "response": Domain.DISEASE,
    "pregnancy-test": Domain.DISEASE, "pregnancy": Domain.DISEASE,
    "medication-history": Domain.ADMINISTRATIONS,
}


def needed_domain(item: str) -> Domain | None:
    if item in NEEDED_DATA_DOMAIN:
        return NEEDED_DATA_DOMAIN[item]
    try:
        return domain_of(Analyte(item))
    except ValueError:
        return None


@dataclass(frozen=True)
class Gaps:
    """The domains not read whole, sorted by what the engine must do about them."""

    blocking: dict[Domain, DomainStatus]  # -> obtain-data (and no proceed)
    unchecked: dict[Domain, DomainStatus]  # -> "not checked" lines; proceed becomes a warning
    dose_unknown: bool  # a dose-deciding domain is among `blocking`: no dose is offered
    deciding: frozenset[Domain] = frozenset()  # the domains that decide this dose

    @property
    def all(self) -> dict[Domain, DomainStatus]:
        return {**self.blocking, **self.unchecked}


def history_read(facts: ClinicalFacts) -> bool:
    return facts.status(Domain.ADMINISTRATIONS).read_whole


def treatment_status_known(facts: ClinicalFacts) -> bool:
    """"Never given and nothing planned" is a fact only when the administrations were read whole
    and the orders, where a planned course is found (MedicationRequest), did not fail."""
    return history_read(facts) and not facts.status(Domain.OTHER_MEDICATIONS).availability.failed


# Where the response is read from (C-5: findings, marrow blasts, Condition in remission).
RESPONSE_DOMAINS: tuple[Domain, ...] = (Domain.DISEASE, Domain.CONDITIONS)


def gaps(facts: ClinicalFacts, *, response_decides_dose: bool) -> Gaps:
    deciding = set(DOSE_DECIDING) | (set(RESPONSE_DOMAINS) if response_decides_dose else set())
    blocking: dict[Domain, DomainStatus] = {}
    unchecked: dict[Domain, DomainStatus] = {}
    for domain, st in facts.not_read().items():
        if domain in deciding or st.availability.failed:
            blocking[domain] = st
        else:
            unchecked[domain] = st
    return Gaps(blocking, unchecked, any(d in deciding for d in blocking), frozenset(deciding))


def unknown_course(course: Course, facts: ClinicalFacts) -> Course:
    """The course when the administration history was not read whole: cycle, day, dose number
    and interruptions are unknown (never "Cycle 1 Day 1" from the part that was read). The
    reduction level read so far is kept: it is never lowered (SmPC 4.2)."""
    st = facts.status(Domain.ADMINISTRATIONS)
    note = (f"Cycle and day unknown (administration history: {st.text()}); nothing is inferred "
            "from the part that was read.")
    return replace(course, cycle=None, day=None, dose_number=None, cycle_start=None,
                   interruptions=(), explicit=False, omitted_dose=None, notes=(note,))


def _lines(statuses: dict[Domain, DomainStatus]) -> str:
    return "\n".join(f"- {DOMAIN_TEXT[d]}: {st.text()}. Rules not applied: {', '.join(DOMAIN_RULES[d])}."
                     for d, st in statuses.items())


def _names(domains) -> str:
    return ", ".join(DOMAIN_TEXT[d].split(" (")[0] for d in domains)


def obtain_data(ctx: RuleContext, g: Gaps) -> Decision | None:
    """One obtain-data card for every blocking domain but the history (C-2 has its own card)."""
    shown = {d: st for d, st in g.blocking.items() if d is not Domain.ADMINISTRATIONS}
    if not shown:
        return None
    rules = tuple(dict.fromkeys(r for d in shown for r in DOMAIN_RULES[d]))
    consequence = ("no dose can be advised" if g.dose_unknown else "a hold or warning may be missed")
    names = list(shown)
    listed = _names(names) if len(names) <= 3 else f"{_names(names[:2])} and {len(names) - 2} more"
    kinds = {st.availability for st in shown.values()}
    verb = ("Could not read" if all(k.failed for k in kinds)
            else "Not provided by the EHR:" if kinds == {Availability.NOT_PROVIDED}
            else "Not supported by the FHIR server:" if kinds == {Availability.UNSUPPORTED}
            else "Not read whole:")
    text = f"{verb} {listed}: {consequence}"
    body = ("The service did not get all of this data from the EHR, so the checks that use it "
            "were not made. Absence of a finding here does **not** mean none is on record:\n\n"
            f"{_lines(shown)}\n\nRetry, or check these in the chart before the dose is given.")
    ev = tuple(Evidence(concept=d.value, value=st.availability.value, note=st.reason or None)
               for d, st in shown.items())
    return Decision(
        code=DecisionCode.OBTAIN_DATA, rules=rules, citations=(),
        summary=summary(text), detail=detail(body, label=ctx.label), label=ctx.label,
        evidence=ev, extras={NOT_READ: {d.value: st.availability.value for d, st in shown.items()}},
    )


def not_checked_text(g: Gaps) -> str:
    return ("**Not checked**: the EHR or its FHIR server does not provide this data, so these "
            "checks were not made (this is not the same as none on record):\n" + _lines(g.unchecked))


def apply(ctx: RuleContext, decisions: list[Decision], g: Gaps) -> list[Decision]:
    """Every decision, seen against what was not read whole:
    - a rule's obtain-data asking only for data that exists but could not be read is replaced by
      the one card saying so (ordering new tests because a server failed is not the answer);
    - no dose offered when a dose-deciding domain was not read whole;
    - a card from a rule that reads such data says its "none found" may be incomplete;
    - every card names every domain not read whole (extension `notRead`)."""
    if not g.all:
        return decisions
    not_read = {d.value: st.availability.value for d, st in g.all.items()}
    in_gap_card = {d for d in g.blocking if d is not Domain.ADMINISTRATIONS}
    out = []
    for d in decisions:
        own = NOT_READ in d.extras  # the cards this module (or C-2) made about the gaps
        if (not own and d.code is DecisionCode.OBTAIN_DATA and d.needed_data
                and all(needed_domain(x) in in_gap_card for x in d.needed_data)):
            continue
        if g.blocking and d.dose is not None and d.code is not DecisionCode.PROCEED:
            # data that sets the dose, or that may stop the treatment (a severe reaction, VOD:
            # then no dose is proposed at all), was not read whole
            d = replace(d, dose=None, detail=d.detail + (
                f"\n\n**No dose is suggested** until this data is read: {_names(g.blocking)} "
                "(it sets the dose or may stop the treatment)."))
        if Domain.ADMINISTRATIONS in g.all and not own and "Cycle and day unknown" not in d.detail:
            d = replace(d, detail=d.detail + "\n\n_Cycle and day unknown (administration "
                        f"history: {g.all[Domain.ADMINISTRATIONS].words}): whether this is the "
                        "first dose, and which dose of its cycle, is not confirmed._")
        touched = [x for x in g.all if x is not Domain.ADMINISTRATIONS
                   and set(d.rules) & set(DOMAIN_RULES[x])]
        if touched and not own and d.code is not DecisionCode.PROCEED:
            d = replace(d, detail=d.detail + "\n\n_Data this check reads was not read whole ("
                        + "; ".join(f"{DOMAIN_TEXT[x]}: {g.all[x].words}" for x in touched)
                        + "): where it finds nothing, that is not the same as none on record._")
        out.append(replace(d, extras={**d.extras, NOT_READ: {**not_read, **d.extras.get(NOT_READ, {})}}))
    return out


def with_not_checked(decision: Decision, g: Gaps) -> Decision:
    """A card that offers a dose (proceed, a corrected dose), or the first card, lists what was
    not checked; a proceed beside it is a warning (app.cards.indicator)."""
    if not g.unchecked:
        return decision
    names = _names(g.unchecked)
    text = decision.summary
    if decision.code is DecisionCode.PROCEED:
        tail = f"; not checked: {names}"
        text = text + tail if len(text + tail) <= 140 else text + "; some data not checked"
    return replace(decision, summary=summary(text),
                   detail=not_checked_text(g) + "\n\n" + decision.detail,
                   extras={**decision.extras,
                           NOT_CHECKED: {d.value: st.text() for d, st in g.unchecked.items()}})


def history_not_read(facts: ClinicalFacts, label: Label) -> Decision:
    """patient-view (or another drug's order) when the administrations could not be read: say so,
    never answer nothing, which would read as "not on inotuzumab ozogamicin"."""
    st = facts.status(Domain.ADMINISTRATIONS)
    if st.read_whole:  # no dose given, but the orders that would show a planned course failed
        st = facts.status(Domain.OTHER_MEDICATIONS)
        text = f"Medication orders {st.words}: inotuzumab ozogamicin treatment status unknown"
        body = (f"No inotuzumab ozogamicin dose is on record, but the medication orders "
                f"(MedicationRequest), where a planned course would show: {st.text()}. Whether "
                "this patient is about to start treatment cannot be said until they are read.")
    else:
        text = (f"Administration history {st.words}: inotuzumab ozogamicin "
                "treatment status unknown")
        body = (f"The inotuzumab ozogamicin administrations (MedicationAdministration): {st.text()}. "
                "Whether this patient is on treatment, and what the next dose requires, cannot be "
                "said until they are read. This is not the same as no dose on record.")
    return Decision(
        code=DecisionCode.OBTAIN_DATA, rules=("C-2",), citations=(), summary=summary(text),
        detail=detail(body, label=label), label=label,
        evidence=(Evidence(concept=Domain.ADMINISTRATIONS.value, value=st.availability.value,
                           note=st.reason or None),),
        extras={NOT_READ: {d.value: s.availability.value for d, s in facts.not_read().items()}},
    )
