"""Funnel arithmetic for one room and window: the counts and the ratios derived from them.

Ratios are ``None`` when the denominator is zero: "no data" is not "zero conversion".
"""

from __future__ import annotations

import msgspec

COUNT_FIELDS = (
    "impressions",
    "enters",
    "unique_viewers",
    "leaves",
    "watch_ms_total",
    "product_impressions",
    "product_clicks",
    "orders_created",
    "orders_paid",
    "gmv_cents",
    "refunds",
    "refund_cents",
)

DERIVED_FIELDS = (
    "enter_rate",
    "ctr",
    "conversion_rate",
    "click_to_order_rate",
    "gpm",
    "aov",
    "order_growth",
    "gmv_growth",
)


class Counts(msgspec.Struct, array_like=True):
    """Additive counts of one window (``unique_viewers`` is kept beside, as a sketch)."""

    impressions: int = 0
    enters: int = 0
    leaves: int = 0
    watch_ms_total: int = 0
    product_impressions: int = 0
    product_clicks: int = 0
    orders_created: int = 0
    orders_paid: int = 0
    gmv_cents: int = 0
    refunds: int = 0
    refund_cents: int = 0


def ratio(numerator: float, denominator: float) -> float | None:
    return None if denominator == 0 else numerator / denominator


def growth(current: int, previous: int | None) -> float | None:
    """``current / previous - 1``; None when there is no previous volume to grow from."""
    if not previous:
        return None
    return current / previous - 1


def add_counts(total: Counts, counts: Counts) -> None:
    """``total += counts``, field by field."""
    for name in Counts.__struct_fields__:
        setattr(total, name, getattr(total, name) + getattr(counts, name))


def derive(
    counts: Counts, prev_orders_paid: int | None, prev_gmv_cents: int | None, exponent: int = 2
) -> dict:
    """The derived values of contract v1, money in major units (minor units / 10^exponent of
    the room's currency: 100 for CNY, 1 for JPY, 1000 for KWD)."""
    gmv = counts.gmv_cents / 10**exponent
    gpm = ratio(gmv * 1000, counts.enters)
    return {
        "enter_rate": ratio(counts.enters, counts.impressions),
        "ctr": ratio(counts.product_clicks, counts.product_impressions),
        "conversion_rate": ratio(counts.orders_paid, counts.enters),
        "click_to_order_rate": ratio(counts.orders_paid, counts.product_clicks),
        "gpm": gpm,
        "aov": ratio(gmv, counts.orders_paid),
        "order_growth": growth(counts.orders_paid, prev_orders_paid),
        "gmv_growth": growth(counts.gmv_cents, prev_gmv_cents),
    }
