from __future__ import annotations

import pytest

from streams.core.contract import OTHER
from streams.core.funnel import (
    DERIVED_FIELDS,
    PEOPLE_DERIVED_FIELDS,
    PEOPLE_FIELDS,
    Counts,
    add_counts,
    change,
    derive,
    derive_people,
    keep_top,
    online,
    products_view,
)


def test_add_counts_adds_every_field() -> None:
    """Spelled out field by field: a field added to Counts must be added there too."""
    names = Counts.__struct_fields__
    total = Counts(**{name: 1000 * (i + 1) for i, name in enumerate(names)})
    add_counts(total, Counts(**{name: i + 1 for i, name in enumerate(names)}))
    assert [getattr(total, name) for name in names] == [1001 * (i + 1) for i in range(len(names))]


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


# -- issue 15: the live screen's numbers ---------------------------------------------------


def test_people_rates_and_per_person_values_from_hand_counts() -> None:
    c = Counts(leaves=4, watch_ms_total=90_000, orders_created=5, orders_paid=4, refunds=1)
    c.gmv_cents = 12_000
    people = dict(zip(PEOPLE_FIELDS, [40, 10, 8, 4, 3], strict=True))
    d = derive_people(c, people)
    assert set(d) == set(PEOPLE_DERIVED_FIELDS)
    assert d["enter_rate_users"] == 0.25  # 10 / 40
    assert d["ctr_users"] == 0.5  # 4 / 8
    assert d["click_to_buy_users"] == 0.75  # 3 / 4
    assert d["conversion_rate_users"] == 0.3  # 3 / 10
    assert d["payment_success_rate"] == 0.8  # 4 / 5
    assert d["refund_rate"] == 0.25  # 1 / 4
    assert d["unpaid_orders"] == 1
    assert d["uv_value"] == 12.0  # 120.00 / 10
    assert d["aov_per_buyer"] == 40.0  # 120.00 / 3
    assert d["watch_seconds_per_viewer"] == 9.0  # 90 s / 10
    assert d["avg_watch_seconds"] == 22.5  # 90 s / 4


def test_people_values_are_none_without_a_denominator_and_unpaid_orders_may_be_negative() -> None:
    d = derive_people(Counts(orders_paid=2), dict.fromkeys(PEOPLE_FIELDS, 0))
    derived_none = set(PEOPLE_DERIVED_FIELDS) - {"unpaid_orders", "refund_rate"}
    assert all(d[k] is None for k in derived_none), d
    assert d["unpaid_orders"] == -2 and d["refund_rate"] == 0.0
    # the session knows viewers and buyers only: rates of other people are left out
    session = derive_people(Counts(), {"viewers": 2, "buyers": 1})
    assert "ctr_users" not in session and session["conversion_rate_users"] == 0.5


def test_online_counts_by_second_in_event_time_whatever_the_arrival_order() -> None:
    # arrival order: an enter at 12 s, a leave at 3 s, enters at 5 s and 3 s, a click at 1 s
    nets: dict[int, int] = {}
    for second, delta in [(12, 1), (3, -1), (5, 1), (3, 1), (1, 0)]:
        nets[second] = nets.get(second, 0) + delta
    # with 2 online before the window: 1 s -> 2, 3 s -> 2, 5 s -> 3, 12 s -> 4
    assert online(nets, 2) == (4, 4, 12_000, 4)
    # the base counts as soon as the window's first second: peak 2 at 1 s when it is the max
    assert online({1: 0, 3: -1, 4: -1}, 2) == (0, 2, 1_000, 0)
    # a negative running count shows as 0, and is remembered as it is
    assert online({7: -3}, 1) == (0, 0, 7_000, -2)
    assert online({}, 5) == (5, None, None, 5)


def test_the_first_second_reaching_the_peak_wins_a_tie() -> None:
    assert online({10: 2, 20: -1, 30: 1, 40: 0}, 0) == (2, 2, 10_000, 2)


def test_products_are_ordered_by_gmv_then_clicks_and_the_rest_summed_last() -> None:
    rows = {  # clicks, created, impressions, paid, gmv, refunds
        "a": [5, 1, 10, 1, 100, 0],
        "b": [9, 1, 10, 1, 100, 0],
        "c": [1, 2, 4, 2, 500, 1],
        "d": [2, 0, 8, 0, 0, 0],
        "e": [2, 0, 0, 0, 0, 0],
    }
    top = keep_top(rows, 2)
    assert list(top) == ["c", "b", OTHER]
    assert top[OTHER] == [9, 1, 18, 1, 100, 0]  # a + d + e
    view = products_view(top)
    assert [p["product_id"] for p in view] == ["c", "b", OTHER]
    assert view[2] == {
        "product_id": OTHER,
        "product_impressions": 18,
        "product_clicks": 9,
        "orders_created": 1,
        "orders_paid": 1,
        "gmv_cents": 100,
        "refunds": 0,
        "ctr": 0.5,
        "click_to_order_rate": 1 / 9,
    }
    # ties on GMV and clicks go by product id; nothing summed when everything fits
    assert [p["product_id"] for p in products_view(keep_top(rows, 5))] == [
        "c",
        "b",
        "a",
        "d",
        "e",
    ]
    assert products_view(None) == []


def test_change_is_current_over_previous_minus_one_and_none_without_a_base() -> None:
    current = {"span_start": 5, "windows": 2, "enters": 30, "ctr": None, "gmv_cents": 10}
    previous = {"span_start": 0, "windows": 1, "enters": 20, "ctr": 0.5, "gmv_cents": 0}
    assert change(current, previous) == {"enters": 0.5, "ctr": None, "gmv_cents": None}
