from __future__ import annotations

import pytest

from streams.core.funnel import DERIVED_FIELDS, Counts, derive


def test_all_derived_values_from_hand_counts() -> None:
    c = Counts(
        impressions=200,
        enters=50,
        product_impressions=40,
        product_clicks=10,
        orders_paid=4,
        gmv_cents=39_600,
    )
    d = derive(c, prev_orders_paid=2, prev_gmv_cents=50_000)
    assert set(d) == set(DERIVED_FIELDS)
    assert d["enter_rate"] == 0.25
    assert d["ctr"] == 0.25
    assert d["conversion_rate"] == 0.08
    assert d["click_to_order_rate"] == 0.4
    assert d["gpm"] == pytest.approx(396.0 / 50 * 1000)
    assert d["aov"] == pytest.approx(99.0)
    assert d["order_growth"] == 1.0
    assert d["gmv_growth"] == pytest.approx(-0.208)


def test_zero_denominators_give_none_not_zero() -> None:
    d = derive(Counts(), prev_orders_paid=0, prev_gmv_cents=0)
    assert all(d[name] is None for name in DERIVED_FIELDS)


def test_zero_numerators_give_zero() -> None:
    d = derive(
        Counts(impressions=3, enters=2, product_impressions=1, product_clicks=1),
        prev_orders_paid=5,
        prev_gmv_cents=100,
    )
    assert d["conversion_rate"] == 0.0
    assert d["gpm"] == 0.0
    assert d["order_growth"] == -1.0
    assert d["aov"] is None


def test_growth_without_previous_window() -> None:
    d = derive(Counts(orders_paid=3, gmv_cents=10), prev_orders_paid=None, prev_gmv_cents=None)
    assert d["order_growth"] is None
    assert d["gmv_growth"] is None
