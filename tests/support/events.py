"""Small shared helpers for tests: comparing windows, turning scenario events into Ev."""

from __future__ import annotations

import math

from streams.core.contract import KIND_OF, SOURCE_OF_TYPE, Ev, Kind, fingerprint
from streams.core.currencies import CURRENCIES

_KIND = {cls.__struct_config__.tag: kind for cls, kind in KIND_OF.items()}


def assert_windows_equal(actual: list[dict], expected: list[dict]) -> None:
    """Counts exactly; derived floats to 1e-12 relative (they are exact quotients)."""
    assert len(actual) == len(expected), (actual, expected)
    for got, want in zip(actual, expected, strict=True):
        assert set(got) == set(want), set(got) ^ set(want)
        for key, value in want.items():
            if isinstance(value, float):
                assert got[key] is not None and math.isclose(got[key], value, rel_tol=1e-12), (
                    key,
                    got[key],
                    value,
                )
            elif isinstance(value, list):  # products
                assert len(got[key]) == len(value), (key, got[key], value)
                assert_windows_equal(got[key], value)
            else:
                assert got[key] == value and type(got[key]) is type(value), (key, got[key], value)


def to_ev(body: dict, offset: int) -> Ev:
    kind = _KIND[body["type"]]
    src = SOURCE_OF_TYPE[body["type"]]
    user = body["user_id"]
    value = body.get("watch_ms", body.get("amount_cents", 0))
    product = body.get("product_id", "")
    oid = fingerprint(body["order_id"]) if kind >= Kind.ORDER_PAID else 0
    currency = CURRENCIES[body["currency"]][0] if kind >= Kind.ORDER_CREATED else 0
    return Ev(
        int(src),
        offset,
        body["ts"],
        body["room_id"],
        int(kind),
        user,
        value,
        product,
        fingerprint(body["event_id"]),
        oid,
        currency,
    )


def number_by_topic(bodies: list[dict]) -> list[Ev]:
    """Give events their offsets: position within their own topic, in production order."""
    next_offset = [0, 0, 0]
    out = []
    for body in bodies:
        src = SOURCE_OF_TYPE[body["type"]]
        out.append(to_ev(body, next_offset[src]))
        next_offset[src] += 1
    return out
