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


def expected_live_screen(base_ms: int) -> list[dict]:
    """The issue-15 fields of the three closed windows, worked out by hand like the above.

    Online: the running count starts at 0; window 0's seconds 5, 6, 7 enter (3), 40 leaves,
    58 enters (u7, out of order): 3 at its end, peak 3 first at second 7; window 1 enters at
    62 and 63 (5); window 2 at 121 (6).
    """
    p2 = {"product_id": "p2", "refunds": 0}
    return [
        {
            "impression_users": 4,
            "viewers": 3,
            "product_impression_users": 2,
            "clicker_users": 1,
            "buyers": 0,
            "enter_rate_users": 0.75,
            "ctr_users": 0.5,
            "click_to_buy_users": 0.0,
            "conversion_rate_users": 0.0,
            "payment_success_rate": None,
            "refund_rate": None,
            "unpaid_orders": 0,
            "uv_value": 0.0,
            "aov_per_buyer": None,
            "watch_seconds_per_viewer": 10.0,
            "avg_watch_seconds": 30.0,
            "online_end": 3,
            "online_peak": 3,
            "online_peak_at": base_ms + 7_000,
            "products": [
                {
                    "product_id": "p1",
                    "product_impressions": 2,
                    "product_clicks": 1,
                    "orders_created": 0,
                    "orders_paid": 0,
                    "gmv_cents": 0,
                    "refunds": 0,
                    "ctr": 0.5,
                    "click_to_order_rate": 0.0,
                }
            ],
        },
        {
            "impression_users": 3,
            "viewers": 2,
            "product_impression_users": 1,
            "clicker_users": 2,
            "buyers": 2,
            "enter_rate_users": 2 / 3,
            "ctr_users": 2.0,
            "click_to_buy_users": 1.0,
            "conversion_rate_users": 1.0,
            "payment_success_rate": 1.0,
            "refund_rate": 0.5,
            "unpaid_orders": 0,
            "uv_value": 74.5,
            "aov_per_buyer": 74.5,
            "watch_seconds_per_viewer": 0.0,
            "avg_watch_seconds": None,
            "online_end": 5,
            "online_peak": 5,
            "online_peak_at": base_ms + 63_000,
            "products": [
                {
                    **p2,
                    "product_impressions": 1,
                    "product_clicks": 2,
                    "orders_created": 2,
                    "orders_paid": 2,
                    "gmv_cents": 14_900,
                    "refunds": 1,
                    "ctr": 2.0,
                    "click_to_order_rate": 1.0,
                }
            ],
        },
        {
            "impression_users": 0,
            "viewers": 1,
            "product_impression_users": 0,
            "clicker_users": 1,
            "buyers": 1,
            "enter_rate_users": None,
            "ctr_users": None,
            "click_to_buy_users": 1.0,
            "conversion_rate_users": 1.0,
            "payment_success_rate": 1.0,
            "refund_rate": 0.0,
            "unpaid_orders": 0,
            "uv_value": 30.0,
            "aov_per_buyer": 30.0,
            "watch_seconds_per_viewer": 0.0,
            "avg_watch_seconds": None,
            "online_end": 6,
            "online_peak": 6,
            "online_peak_at": base_ms + 121_000,
            "products": [
                {
                    **p2,
                    "product_impressions": 0,
                    "product_clicks": 1,
                    "orders_created": 1,
                    "orders_paid": 1,
                    "gmv_cents": 3_000,
                    "ctr": None,
                    "click_to_order_rate": 1.0,
                }
            ],
        },
    ]


def expected_windows(base_ms: int) -> list[dict]:
    """Every key of the closed windows: contract v1's and issue 15's."""
    return [
        {**old, **new}
        for old, new in zip(
            expected_closed_windows(base_ms), expected_live_screen(base_ms), strict=True
        )
    ]


def expected_session(base_ms: int) -> dict:
    """The room's session block once the three windows closed (viewers u1 u2 u7 u5 u6)."""
    return {
        "impressions": 7,
        "enters": 7,
        "unique_viewers": 5,
        "leaves": 1,
        "watch_ms_total": 30_000,
        "product_impressions": 3,
        "product_clicks": 4,
        "orders_created": 3,
        "orders_paid": 3,
        "gmv_cents": 17_900,
        "refunds": 1,
        "refund_cents": 1_000,
        "viewers": 5,
        "buyers": 2,
        "enter_rate": 1.0,
        "ctr": 4 / 3,
        "conversion_rate": 3 / 7,
        "click_to_order_rate": 0.75,
        "gpm": 179.0 / 7 * 1000,
        "aov": 179.0 / 3,
        "conversion_rate_users": 0.4,
        "payment_success_rate": 1.0,
        "refund_rate": 1 / 3,
        "unpaid_orders": 0,
        "uv_value": 179.0 / 5,
        "aov_per_buyer": 89.5,
        "watch_seconds_per_viewer": 6.0,
        "avg_watch_seconds": 30.0,
        "online_now": 6,
        "online_peak": 6,
        "online_peak_at": base_ms + 121_000,
        "peak_gmv_window_start": base_ms + 60_000,
        "peak_gmv_cents": 14_900,
    }
