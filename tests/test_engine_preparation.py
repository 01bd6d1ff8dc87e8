"""R-1: preparation (SmPC 6.6 and Table 8; USPI 2.4 and Table 5)."""

from __future__ import annotations

import pytest
from engine_factories import body, cycle_start_date, context, day, draft, facts, label_history, response
from datetime import timedelta

from app.engine.decisions import DecisionCode, Label
from app.engine.policy import Policy
from app.engine.rules.preparation import check_preparation, prepare

P = Policy()


def test_eu_1_mg_vials_volume_and_concentration():
    p = prepare(1.45, P, Label.EU)  # 0.8 mg/m2 x 1.82 m2
    assert (p.vials, p.vial_mg, p.reconstituted_volume_ml) == (2, 1.0, 5.8)  # 1.45 / 0.25
    assert p.final_mg_per_ml == pytest.approx(0.029) and p.in_range
    assert "2 x 1 mg vials" in p.markdown and "5.8 mL" in p.markdown and "50 mL" in p.markdown
    assert "4 mL water for injection" in p.markdown and "60 min at 50 mL/h" in p.markdown
    assert "<= 8 h" in p.markdown and "<= 4 h from reconstitution to dilution" in p.markdown
    assert "SmPC 6.6, Table 8" in p.markdown


def test_us_vial_delivers_0_9_mg():
    assert prepare(0.9, P, Label.US).vials == 1
    assert prepare(0.91, P, Label.US).vials == 2  # 0.91 > 0.9 deliverable
    assert prepare(0.91, P, Label.EU).vials == 1  # EU 1 mg vial
    us = prepare(1.45, P, Label.US)
    assert "each delivers 0.9 mg (3.6 mL)" in us.markdown
    assert "4 h at room temperature or 3 h refrigerated" in us.markdown  # USPI Table 5
    assert "USPI 2.4, Table 5" in us.markdown


@pytest.mark.parametrize("dose_mg, in_range", [(0.5, True), (0.49, False), (5.0, True),
                                               (5.01, False)])
def test_final_concentration_0_01_to_0_1_mg_per_ml(dose_mg, in_range):
    assert prepare(dose_mg, P, Label.EU).in_range is in_range


def test_zero_dose_rejected():
    with pytest.raises(ValueError):
        prepare(0, P)


def test_low_concentration_caution_for_small_reduced_dose():
    # level 1 (0.375 mg/m2) in a small patient: 120 cm, 43 kg -> BSA 1.197 -> 0.45 mg in 50 mL
    start2 = cycle_start_date(2)
    from engine_factories import dose
    doses = label_history(1) + [dose(start2, mg_per_m2=0.375)]
    f = facts(draft=draft(start2 + timedelta(days=7), mg_per_m2=0.375), doses=doses,
              measurements=body(120, 43, when=start2), responses=[response("CR", day(20))])
    [d] = check_preparation(context(f))
    assert d.code is DecisionCode.CAUTION and d.rules == ("R-1",)
    assert "0.45 mg in 50 mL is 0.009 mg/mL, below the 0.01-0.1 mg/mL range" == d.summary[13:]
    assert "pharmacist decides" in d.detail


def test_no_caution_in_range_and_none_without_draft():
    f = facts(draft=draft(day(1), mg_per_m2=0.8), measurements=body())
    assert check_preparation(context(f)) == []
    assert check_preparation(context(facts(measurements=body()))) == []
