"""The benchmark's end check for LivePulse: one request per poll, like the other contenders'
``/progress``, and done only when every sentinel room shows the events of all three topics."""

from __future__ import annotations

import random
import urllib.parse

import pytest

from bench import load, run


def test_a_sentinel_rooms_events_share_one_time_so_it_has_one_window() -> None:
    records: load.Partitioned = {
        (topic, p): [(b"room-1", b"{}", 1_000 + 7 * p + i)]
        for p in range(4)
        for i, topic in enumerate(load.SOURCE_TOPICS)
    }
    rooms = run.add_sentinels(records, 4)
    for p, room in rooms.items():
        ends = {records[(t, p)][-1][2] for t in load.SOURCE_TOPICS}
        assert {records[(t, p)][-1][0] for t in load.SOURCE_TOPICS} == {room.encode()}
        assert ends == {1_000 + 7 * p + 2}, ends


def test_the_end_check_asks_one_rooms_page_per_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    sentinels = run.sentinel_rooms(4)
    asked: list[str] = []
    shown: dict[str, dict] = {}

    def http_get(url: str, timeout: float = 10) -> tuple[int, bytes]:
        asked.append(url)
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
        after, limit = query["after"][0], int(query["limit"][0])
        ids = sorted(r for r in [*shown, "room-0001"] if r > after)[:limit]
        rows = [shown.get(r, {"room_id": r, "last_closed": None, "open": None}) for r in ids]
        return 200, run.orjson.dumps({"rooms": rows})

    monkeypatch.setattr(run, "http_get", http_get)
    window = {"impressions": 1, "product_impressions": 1, "orders_created": 1}
    rooms = list(sentinels.values())
    random.Random(1).shuffle(rooms)
    for i, room in enumerate(rooms):
        assert not run.sentinels_done("http://w", sentinels)
        where = "open" if i % 2 else "last_closed"
        shown[room] = {"room_id": room, "last_closed": None, "open": None, where: window}
    shown[rooms[0]]["open"] = {**window, "orders_created": 0}  # a second window adds nothing
    assert run.sentinels_done("http://w", sentinels)
    assert len(asked) == len(rooms) + 1
