"""Funnel arithmetic for one room and window: the counts and the ratios derived from them.

Ratios are ``None`` when the denominator is zero: "no data" is not "zero conversion".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import msgspec

from streams.core.contract import OTHER

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
    """``total += counts``, field by field (spelled out: a loop of getattr/setattr costs
    several times more, at every window close and every batch)."""
    total.impressions += counts.impressions
    total.enters += counts.enters
    total.leaves += counts.leaves
    total.watch_ms_total += counts.watch_ms_total
    total.product_impressions += counts.product_impressions
    total.product_clicks += counts.product_clicks
    total.orders_created += counts.orders_created
    total.orders_paid += counts.orders_paid
    total.gmv_cents += counts.gmv_cents
    total.refunds += counts.refunds
    total.refund_cents += counts.refund_cents


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


# -- the live screen's numbers (issue 15; names fixed by docs/contract.md) -----------------

#: Distinct ``user_id`` per funnel stage, in the order a window keeps their sketches:
#: impression, enter, product_impression, product_click, order_paid.
PEOPLE_FIELDS = (
    "impression_users",
    "viewers",
    "product_impression_users",
    "clicker_users",
    "buyers",
)
IMPRESSION_USERS, VIEWERS, PRODUCT_IMPRESSION_USERS, CLICKER_USERS, BUYERS = range(5)

#: Derived from counts and people; a key is left out when its people are not known (the
#: session keeps only viewers and buyers).
PEOPLE_DERIVED_FIELDS = (
    "enter_rate_users",
    "ctr_users",
    "click_to_buy_users",
    "conversion_rate_users",
    "payment_success_rate",
    "refund_rate",
    "unpaid_orders",
    "uv_value",
    "aov_per_buyer",
    "watch_seconds_per_viewer",
    "avg_watch_seconds",
)
ONLINE_FIELDS = ("online_end", "online_peak", "online_peak_at")

#: A product's columns as a window keeps them (the first two are what the detector reads).
PRODUCT_COLUMNS = (
    "product_clicks",
    "orders_created",
    "product_impressions",
    "orders_paid",
    "gmv_cents",
    "refunds",
)
P_CLICKS, P_CREATED, P_IMPRESSIONS, P_PAID, P_GMV, P_REFUNDS = range(6)
#: The keys of an item of a window's ``products`` list, in the order they are shown.
PRODUCT_FIELDS = (
    "product_id",
    "product_impressions",
    "product_clicks",
    "orders_created",
    "orders_paid",
    "gmv_cents",
    "refunds",
    "ctr",
    "click_to_order_rate",
)


def derive_people(counts: Counts, people: dict[str, int], exponent: int = 2) -> dict:
    """The people-based rates and the per-order, per-viewer values; money in major units."""
    gmv = counts.gmv_cents / 10**exponent
    out: dict = {}
    get = people.get
    imp, viewers, cards, clickers, buyers = (get(name) for name in PEOPLE_FIELDS)
    if viewers is not None and imp is not None:
        out["enter_rate_users"] = ratio(viewers, imp)
    if clickers is not None and cards is not None:
        out["ctr_users"] = ratio(clickers, cards)
    if buyers is not None and clickers is not None:
        out["click_to_buy_users"] = ratio(buyers, clickers)
    if buyers is not None and viewers is not None:
        out["conversion_rate_users"] = ratio(buyers, viewers)
    out["payment_success_rate"] = ratio(counts.orders_paid, counts.orders_created)
    out["refund_rate"] = ratio(counts.refunds, counts.orders_paid)
    out["unpaid_orders"] = counts.orders_created - counts.orders_paid
    if viewers is not None:
        out["uv_value"] = ratio(gmv, viewers)
    if buyers is not None:
        out["aov_per_buyer"] = ratio(gmv, buyers)
    if viewers is not None:
        out["watch_seconds_per_viewer"] = ratio(counts.watch_ms_total / 1000, viewers)
    out["avg_watch_seconds"] = ratio(counts.watch_ms_total / 1000, counts.leaves)
    return out


def online(nets: Mapping[int, int], base: int) -> tuple[int, int | None, int | None, int]:
    """Online viewers over one window's seconds: ``(online_end, online_peak, online_peak_at,
    running count at the end)``.

    ``nets``: second (``ts // 1000``) -> enters − leaves of the window's applied events in it,
    one entry per second in which the window had an applied event, in any order; ``base``: the
    room's running count before the window. The count is taken in event-time order by whole
    seconds whatever order the events came in; the peak is the first second reaching the
    largest max(0, count) (None for a window with no second known).
    """
    running = base
    peak = -1
    peak_at = 0
    for second in sorted(nets):
        running += nets[second]
        now = running if running > 0 else 0
        if now > peak:
            peak, peak_at = now, second
    if peak < 0:
        return max(0, running), None, None, running
    return max(0, running), peak, peak_at * 1000, running


def window_view(
    start: int,
    size_ms: int,
    closed: bool,
    counts: Counts,
    people: list[int],
    online_values: tuple[int | None, int | None, int | None],
    previous: tuple[int, int],
    exponent: int,
    products: list[dict],
) -> dict:
    """A window as ``/rooms/{room_id}`` shows it (``unique_viewers`` is ``viewers``'s alias)."""
    out: dict = {"window_start": start, "window_end": start + size_ms, "closed": closed}
    values = msgspec.structs.asdict(counts)
    values["unique_viewers"] = people[VIEWERS]
    out.update((name, values[name]) for name in COUNT_FIELDS)
    out.update(derive(counts, previous[0], previous[1], exponent))
    named = dict(zip(PEOPLE_FIELDS, people, strict=True))
    out.update(named)
    out.update(derive_people(counts, named, exponent))
    out.update(zip(ONLINE_FIELDS, online_values, strict=True))
    out["products"] = products
    return out


def _product_order(item: tuple[str, list[int]]) -> tuple[int, int, str]:
    product, row = item
    return (-row[P_GMV], -row[P_CLICKS], product)


def keep_top(products: dict[str, list[int]], keep: int) -> dict[str, list[int]]:
    """The ``keep`` first products by GMV, then clicks, then id; the rest (and an ``__other__``
    already there) summed into one ``__other__`` row. Rows are lists of PRODUCT_COLUMNS."""
    if len(products) - (OTHER in products) <= keep:
        return products  # nothing to sum: no need to sort
    named = sorted(((p, r) for p, r in products.items() if p != OTHER), key=_product_order)
    if len(named) <= keep:
        return products
    top = dict(named[:keep])
    other = list(products.get(OTHER, [0] * len(PRODUCT_COLUMNS)))
    for _, row in named[keep:]:
        other = [a + b for a, b in zip(other, row, strict=True)]
    top[OTHER] = other
    return top


def products_view(products: dict[str, list[int]] | None) -> list[dict]:
    """A window's ``products``: by GMV desc, clicks desc, id; ``__other__`` last."""
    if not products:
        return []
    items = sorted(((p, r) for p, r in products.items() if p != OTHER), key=_product_order)
    if OTHER in products:
        items.append((OTHER, products[OTHER]))
    out = []
    for product, row in items:
        out.append(
            {
                "product_id": product,
                "product_impressions": row[P_IMPRESSIONS],
                "product_clicks": row[P_CLICKS],
                "orders_created": row[P_CREATED],
                "orders_paid": row[P_PAID],
                "gmv_cents": row[P_GMV],
                "refunds": row[P_REFUNDS],
                "ctr": ratio(row[P_CLICKS], row[P_IMPRESSIONS]),
                "click_to_order_rate": ratio(row[P_PAID], row[P_CLICKS]),
            }
        )
    return out


class SpanWindow(msgspec.Struct):
    """What a rolling span needs of one closed window."""

    start: int
    counts: Counts
    online_end: int | None
    online_peak: int | None
    online_peak_at: int | None


def span_view(
    span_start: int,
    span_end: int,
    windows: list[SpanWindow],
    people: list[int],
    exponent: int,
) -> dict:
    """One side of a rolling block: the closed windows of ``[span_start, span_end)`` merged
    (``windows`` oldest first; ``people`` their merged sketches' estimates)."""
    total = Counts()
    for w in windows:
        add_counts(total, w.counts)
    out: dict = {"span_start": span_start, "span_end": span_end, "windows": len(windows)}
    values = msgspec.structs.asdict(total)
    values["unique_viewers"] = people[VIEWERS]
    out.update((name, values[name]) for name in COUNT_FIELDS)
    named = dict(zip(PEOPLE_FIELDS, people, strict=True))
    out.update(named)
    derived = derive(total, None, None, exponent)
    del derived["order_growth"], derived["gmv_growth"]
    out.update(derived)
    out.update(derive_people(total, named, exponent))
    out["online_end"] = windows[-1].online_end if windows else None
    peak: int | None = None
    peak_at: int | None = None
    for w in windows:
        if w.online_peak is not None and (peak is None or w.online_peak > peak):
            peak, peak_at = w.online_peak, w.online_peak_at
    out["online_peak"], out["online_peak_at"] = peak, peak_at
    return out


#: Keys of a span that ``change`` does not compare.
_NOT_CHANGED = frozenset({"span_start", "span_end", "windows", "online_peak_at"})


def change(current: dict, previous: dict) -> dict:
    """``current[k] / previous[k] - 1`` for every numeric key; None when either is None or
    the previous value is 0."""
    out = {}
    for key, now in current.items():
        if key in _NOT_CHANGED:
            continue
        before = previous.get(key)
        out[key] = None if now is None or before is None or before == 0 else now / before - 1
    return out


def rolling_view(
    last_end: int | None,
    size_ms: int,
    spans: tuple[int, ...],
    merged: Callable[[int, int], tuple[list[SpanWindow], list[int]]],
    exponent: int,
) -> dict:
    """The ``rolling`` block: per N (as a string), the last N closed windows' span
    ``[E − N·size, E)`` against the N before it (E: the last closed window's end; no closed
    window: null). ``merged(lo, hi)`` gives the closed windows starting in ``[lo, hi)`` and
    their people."""
    out: dict = {}
    for n in spans:
        if last_end is None:
            out[str(n)] = None
            continue
        mid, low = last_end - n * size_ms, last_end - 2 * n * size_ms
        current = span_view(mid, last_end, *merged(mid, last_end), exponent)
        previous = span_view(low, mid, *merged(low, mid), exponent)
        out[str(n)] = {
            "current": current,
            "previous": previous,
            "change": change(current, previous),
        }
    return out


def session_view(
    counts: Counts,
    viewers: int,
    buyers: int,
    exponent: int,
    online_now: int,
    online_peak: int | None,
    online_peak_at: int | None,
    peak_gmv: tuple[int, int] | None,
) -> dict:
    """The ``session`` block: everything applied since the room's state began."""
    out: dict = {}
    values = msgspec.structs.asdict(counts)
    values["unique_viewers"] = viewers
    out.update((name, values[name]) for name in COUNT_FIELDS)
    out["viewers"], out["buyers"] = viewers, buyers
    derived = derive(counts, None, None, exponent)
    del derived["order_growth"], derived["gmv_growth"]
    out.update(derived)
    out.update(derive_people(counts, {"viewers": viewers, "buyers": buyers}, exponent))
    out["online_now"] = online_now
    out["online_peak"], out["online_peak_at"] = online_peak, online_peak_at
    out["peak_gmv_window_start"] = None if peak_gmv is None else peak_gmv[0]
    out["peak_gmv_cents"] = None if peak_gmv is None else peak_gmv[1]
    return out
