"""Comparing a real worker's rooms with a simulated session's independently computed truth.

Field names are those of /rooms (docs/contract.md, issue 15); they are written out here rather
than imported from the stream code, like the truth itself. Counts, money and online values must
be equal; distinct people (HLL sketches) within ``PEOPLE_TOLERANCE`` of the exact count, and
exact below ``EXACT_BELOW``; a rate over people within what those tolerances allow.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

from streams.testing import Pipeline, wait_until

#: Distinct people of a window, a rolling span or the session (``unique_viewers``: the alias
#: of ``viewers``).
PEOPLE = (
    "impression_users",
    "viewers",
    "unique_viewers",
    "product_impression_users",
    "clicker_users",
    "buyers",
)
PEOPLE_TOLERANCE = 0.02
EXACT_BELOW = 1000
#: Rates with people in them: key -> (numerator, denominator).
PEOPLE_RATES = {
    "enter_rate_users": ("viewers", "impression_users"),
    "ctr_users": ("clicker_users", "product_impression_users"),
    "click_to_buy_users": ("buyers", "clicker_users"),
    "conversion_rate_users": ("buyers", "viewers"),
    "uv_value": ("gmv_cents", "viewers"),
    "aov_per_buyer": ("gmv_cents", "buyers"),
    "watch_seconds_per_viewer": ("watch_ms_total", "viewers"),
}
#: Keys of a rolling span that have no change.
NOT_CHANGED = ("span_start", "span_end", "windows", "online_peak_at")


def _people_tolerance(want: dict, key: str) -> float:
    if key not in PEOPLE:
        return 0.0
    return 0.0 if want[key] < EXACT_BELOW else PEOPLE_TOLERANCE


def tolerance(want: dict, key: str) -> float:
    """Relative tolerance of ``key`` in a truth block ``want`` (a window, span or session)."""
    if key in PEOPLE_RATES:
        numerator, denominator = PEOPLE_RATES[key]
        up = _people_tolerance(want, numerator)
        down = _people_tolerance(want, denominator)
        return (1 + up) / (1 - down) - 1
    return _people_tolerance(want, key)


def _close(have: object, want: object, rel: float, where: tuple) -> None:
    if want is None:
        assert have is None, (*where, have)
        return
    assert isinstance(have, int | float) and not isinstance(have, bool), (*where, have, want)
    if isinstance(want, int) and rel == 0:
        assert have == want, (*where, have, want)
    else:
        assert math.isclose(have, want, rel_tol=max(rel, 1e-9), abs_tol=1e-12), (
            *where,
            have,
            want,
        )


def assert_block(have: dict, want: dict, where: tuple) -> None:
    """Every key of the truth block ``want`` in ``have``, within its tolerance."""
    for key, value in want.items():
        if key in ("room_id", "products"):  # the room is in ``where``; products: see below
            continue
        assert key in have, (*where, "missing", key)
        if isinstance(value, str):  # product_id
            assert have[key] == value, (*where, key, have[key], value)
        else:
            _close(have[key], value, tolerance(want, key), (*where, key))


def assert_products(have: list[dict], want: list[dict], where: tuple) -> None:
    """The same products in the same order (GMV, clicks, id), each with the same values."""
    assert [p["product_id"] for p in have] == [p["product_id"] for p in want], where
    for got, expected in zip(have, want, strict=True):
        assert_block(got, expected, (*where, expected["product_id"]))


def assert_rolling(have: dict, want: dict, where: tuple) -> None:
    assert set(have) == set(want), (*where, sorted(have), sorted(want))
    for n, expected in want.items():
        if expected is None:
            assert have[n] is None, (*where, n)
            continue
        got = have[n]
        current, previous = expected["current"], expected["previous"]
        assert_block(got["current"], current, (*where, n, "current"))
        assert_block(got["previous"], previous, (*where, n, "previous"))
        for key, value in expected["change"].items():
            assert key in got["change"], (*where, n, "change", "missing", key)
            # current / previous - 1, each side within its own tolerance
            rel = (1 + tolerance(current, key)) / (1 - tolerance(previous, key)) - 1
            have_change = got["change"][key]
            if value is None or rel == 0:
                _close(have_change, value, 0.0, (*where, n, "change", key))
            else:
                assert abs(have_change - value) <= (value + 1) * rel + 1e-9, (
                    *where,
                    n,
                    "change",
                    key,
                    have_change,
                    value,
                )


def assert_index_serves_the_blocks(pipeline: Pipeline) -> None:
    """``/rooms`` rows carry the same session and rolling blocks as ``/rooms/{room_id}``."""
    for row in pipeline.rooms():
        detail = pipeline.room(row["room_id"])
        assert detail is not None, row["room_id"]
        assert row["session"] == detail["session"], row["room_id"]
        assert row["rolling"] == detail["rolling"], row["room_id"]


def assert_matches_truth(pipeline: Pipeline, truth: dict) -> int:
    """Every truth window of the session is closed on the worker with the same numbers, and
    every room's rolling and session blocks equal the truth's; returns the windows compared.

    ``truth`` may cover earlier sessions of the same rooms too (their state began then); only
    the windows of the session in ``truth["config"]`` are compared (older ones may be gone)."""
    config = truth["config"]
    session_start = config["end_ms"] - int(config["minutes"] * 60_000)
    first = session_start - session_start % config["window_ms"]
    by_room: dict[str, list[dict]] = {}
    for w in truth["windows"]:
        by_room.setdefault(w["room_id"], [])
        if w["window_start"] >= first:
            by_room[w["room_id"]].append(w)
    compared = 0
    # the rooms are fetched a few at a time: the worker answers one while the test decodes
    # another (thousands of rooms in the fault tests); they are compared in order below
    with ThreadPoolExecutor(4) as pool:
        details = dict(zip(by_room, pool.map(pipeline.room, by_room), strict=True))
    for room, expected in by_room.items():
        detail = details[room]
        assert detail is not None, room
        got = {
            w["window_start"]: w
            for w in detail["windows"]
            if w["closed"] and w["window_start"] >= first
        }
        starts = [w["window_start"] for w in expected]
        assert sorted(got) == starts, (
            room,
            "missing",
            sorted(set(starts) - set(got)),
            "extra",
            sorted(set(got) - set(starts)),
            "open",
            [w["window_start"] for w in detail["windows"] if not w["closed"]],
        )
        for want in expected:
            have = got[want["window_start"]]
            where = (room, want["window_start"])
            assert_block(have, want, where)
            assert_products(have["products"], want["products"], (*where, "products"))
        compared += len(expected)
        assert detail["late_events"] == truth["late_by_room"].get(room, 0), room
        blocks = truth["rooms"][room]
        assert_rolling(detail["rolling"], blocks["rolling"], (room, "rolling"))
        assert_block(detail["session"], blocks["session"], (room, "session"))
    return compared


def close_and_wait(pipeline: Pipeline, truth: dict) -> None:
    """Move every watermark past the session, then wait for each room's last window."""
    config = truth["config"]
    pipeline.close_windows(after_ms=config["end_ms"] + config["window_ms"] + config["grace_ms"])
    last = {w["room_id"]: w["window_start"] for w in truth["windows"]}

    def closed() -> bool:
        # a room's windows close in order, so its /rooms row's latest closed window tells:
        # one listing per poll, not a request per room (assert_matches_truth then compares
        # every window, so a window closed that the truth does not have still fails)
        try:
            rows = pipeline.rooms()
        except OSError:  # a busy worker did not answer in time (a page of thousands of rooms)
            return False
        latest: dict[str, int] = {}
        for row in rows:
            start = row["last_closed"]["window_start"] if row["last_closed"] else -1
            latest[row["room_id"]] = max(start, latest.get(row["room_id"], -1))
        return all(latest.get(room, -1) >= start for room, start in last.items())

    wait_until(closed, 60, "every room's last window to close", pipeline.log)
