"""The hand-computed scenario of issue #2, shared by the unit and the integration tests.

Times are offsets in seconds from a window-aligned base; windows are 60 s, grace 5 s.
Every expected number below was worked out by hand from the list of events, not by the code.
"""

from __future__ import annotations

WINDOW_MS = 60_000
GRACE_MS = 5_000
ORDER = {"product_id": "p2", "currency": "CNY"}


def events(room: str, base_ms: int) -> list[tuple[str, dict]]:
    """(topic kind, event) in the order they are produced; kind is views/clicks/orders."""
    n = 0

    def ev(kind: str, type_: str, user: str, at_s: float, **extra: object) -> tuple[str, dict]:
        nonlocal n
        n += 1
        body = {
            "event_id": f"{room}-{n}",
            "room_id": room,
            "user_id": user,
            "ts": base_ms + int(at_s * 1000),
            "type": type_,
            **extra,
        }
        return kind, body

    return [
        # window 0 [0 s, 60 s)
        ev("views", "impression", "u1", 1),
        ev("views", "impression", "u2", 2),
        ev("views", "impression", "u3", 3),
        ev("views", "impression", "u4", 4),
        ev("views", "enter", "u1", 5),
        ev("views", "enter", "u2", 6),
        ev("views", "enter", "u1", 7),
        ev("views", "leave", "u1", 40, watch_ms=30_000),
        ev("clicks", "product_impression", "u1", 10, product_id="p1"),
        ev("clicks", "product_impression", "u2", 11, product_id="p1"),
        ev("clicks", "product_click", "u1", 12, product_id="p1"),
        # window 1 [60 s, 120 s)
        ev("views", "impression", "u5", 61),
        ev("views", "enter", "u5", 62),
        ev("views", "enter", "u6", 63),
        ev("views", "enter", "u7", 58),  # out of order, 5 s behind the max: on time, window 0
        ev("views", "impression", "u8", 70),
        ev("views", "impression", "u10", 69),
        ev("views", "enter", "u9", 60),  # 10 s behind the max (70 s): late, not applied
        ev("clicks", "product_impression", "u5", 64, product_id="p2"),
        ev("clicks", "product_click", "u5", 65, product_id="p2"),
        ev("clicks", "product_click", "u6", 66, product_id="p2"),
        ev("orders", "created", "u5", 67, order_id="o1", quantity=1, amount_cents=9_900, **ORDER),
        ev("orders", "paid", "u5", 68, order_id="o1", quantity=1, amount_cents=9_900, **ORDER),
        ev("orders", "created", "u6", 69, order_id="o2", quantity=2, amount_cents=5_000, **ORDER),
        ev("orders", "paid", "u6", 70, order_id="o2", quantity=2, amount_cents=5_000, **ORDER),
        ev("orders", "refunded", "u0", 71, order_id="o0", quantity=1, amount_cents=1_000, **ORDER),
        # window 2 [120 s, 180 s)
        ev("views", "enter", "u5", 121),
        ev("clicks", "product_click", "u5", 122, product_id="p2"),
        ev("orders", "created", "u5", 124, order_id="o3", quantity=1, amount_cents=3_000, **ORDER),
        ev("orders", "paid", "u5", 125, order_id="o3", quantity=1, amount_cents=3_000, **ORDER),
    ]


def expected_closed_windows(base_ms: int) -> list[dict]:
    zero = {"orders_created": 0, "orders_paid": 0, "gmv_cents": 0, "refunds": 0, "refund_cents": 0}
    return [
        {
            "window_start": base_ms,
            "window_end": base_ms + 60_000,
            "closed": True,
            "impressions": 4,
            "enters": 4,
            "unique_viewers": 3,
            "leaves": 1,
            "watch_ms_total": 30_000,
            "product_impressions": 2,
            "product_clicks": 1,
            **zero,
            "enter_rate": 1.0,
            "ctr": 0.5,
            "conversion_rate": 0.0,
            "click_to_order_rate": 0.0,
            "gpm": 0.0,
            "aov": None,
            "order_growth": None,
            "gmv_growth": None,
        },
        {
            "window_start": base_ms + 60_000,
            "window_end": base_ms + 120_000,
            "closed": True,
            "impressions": 3,
            "enters": 2,
            "unique_viewers": 2,
            "leaves": 0,
            "watch_ms_total": 0,
            "product_impressions": 1,
            "product_clicks": 2,
            "orders_created": 2,
            "orders_paid": 2,
            "gmv_cents": 14_900,
            "refunds": 1,
            "refund_cents": 1_000,
            "enter_rate": 2 / 3,
            "ctr": 2.0,
            "conversion_rate": 1.0,
            "click_to_order_rate": 1.0,
            "gpm": 149.0 / 2 * 1000,
            "aov": 74.5,
            "order_growth": None,  # the previous window had no paid orders
            "gmv_growth": None,
        },
        {
            "window_start": base_ms + 120_000,
            "window_end": base_ms + 180_000,
            "closed": True,
            "impressions": 0,
            "enters": 1,
            "unique_viewers": 1,
            "leaves": 0,
            "watch_ms_total": 0,
            "product_impressions": 0,
            "product_clicks": 1,
            "orders_created": 1,
            "orders_paid": 1,
            "gmv_cents": 3_000,
            "refunds": 0,
            "refund_cents": 0,
            "enter_rate": None,
            "ctr": None,
            "conversion_rate": 1.0,
            "click_to_order_rate": 1.0,
            "gpm": 30_000.0,
            "aov": 30.0,
            "order_growth": 1 / 2 - 1,
            "gmv_growth": 3_000 / 14_900 - 1,
        },
    ]


EXPECTED_LATE = 1
