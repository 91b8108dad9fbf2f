"""Small shared helpers for tests: comparing windows, turning scenario events into Ev, the
processor configuration and times the unit tests share."""

from __future__ import annotations

import math

from streams.core.contract import KIND_OF, SOURCE_OF_TYPE, Ev, Kind, fingerprint
from streams.core.currencies import CURRENCIES
from streams.core.driver import LocalWorker
from streams.core.processor import ProcessorConfig
from streams.core.rooms import RoomConfig

_KIND = {cls.__struct_config__.tag: kind for cls, kind in KIND_OF.items()}

BASE = 1_700_000_000_000 - 1_700_000_000_000 % 60_000
FLUSH_AT = BASE + 30 * 60_000
CNY = CURRENCIES["CNY"][0]


def config(retention: int = 60) -> ProcessorConfig:
    return ProcessorConfig(room=RoomConfig(size_ms=60_000, retention=retention), grace_ms=5_000)


def one_partition(retention: int = 60) -> LocalWorker:
    """The in-memory worker with one partition, fed decoded events with ``apply(0, ...)``."""
    return LocalWorker(1, config(retention))


def flush(offsets: list[int], at: int = FLUSH_AT) -> list[Ev]:
    """One event per source at ``at`` (room "flush"): moves the watermark past earlier
    windows."""
    return [
        Ev(src, offsets[src] + 1000, at, "flush", int(kind), "f")
        for src, kind in ((0, Kind.ENTER), (1, Kind.PRODUCT_CLICK), (2, Kind.ORDER_CREATED))
    ]


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
