"""A year of daily labs: only results the rules can use are converted (no timing assertions here;
the benchmark prints the figures)."""

from __future__ import annotations

from datetime import timedelta

from app.engine.facts import Analyte
from app.facts_builder import HISTORY_LOOKBACK_DAYS, KEEP_BEFORE_HORIZON, build_facts
from tests.fixtures.mappings.large_patient import READ_BY_RULES, make_patient


def test_year_of_daily_labs():
    resources, draft, now = make_patient(days=365)
    assert len(resources) > 5000
    facts = build_facts("bench-1", resources, draft, now)
    assert facts.problems == ()
    first_dose = facts.doses_given[0].given_at
    horizon = first_dose - timedelta(days=HISTORY_LOOKBACK_DAYS)
    labs = [m for m in facts.measurements if m.analyte not in (Analyte.HEIGHT, Analyte.WEIGHT)]
    recent_days = sum(1 for d in range(365)
                      if (now - timedelta(days=365 - d)).replace(hour=7, minute=0) >= horizon)
    assert len(labs) == READ_BY_RULES * (recent_days + KEEP_BEFORE_HORIZON)
    # The baseline (latest before the first dose) is there, with its ULN in canonical units.
    base = facts.latest(Analyte.PLATELETS, first_dose)
    assert (base.value, base.uln, base.unit) == (150.0, 400.0, "10*9/L")
    assert facts.draft.dose_mg_per_m2 == 0.5
    assert [d.dose_mg for d in facts.doses_given] == [1.6, 1.0]
