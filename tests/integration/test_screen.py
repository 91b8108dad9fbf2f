"""The live screen in a real Chromium, on a worker that replayed the recorded session: what
the pages show equals /rooms/{room_id}, they follow new events, and they log no errors."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from streams.testing import Pipeline, running_pipeline, wait_until
from tests.support.browser import Browser, chromium
from tests.support.truth import close_and_wait

DATA = Path(__file__).parents[1] / "data"
TRUTH = orjson.loads((DATA / "session.truth.json").read_bytes())


@pytest.fixture(scope="module")
def replayed(livepulse_broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    """A worker on fresh topics that replayed tests/data/session.jsonl, its windows closed."""
    run = uuid.uuid4().hex[:8]
    names = {
        "app_id": f"livepulse-screen-{run}",
        "topic_views": f"{run}.live.views",
        "topic_clicks": f"{run}.live.clicks",
        "topic_orders": f"{run}.live.orders",
        "topic_deadletter": f"{run}.live.deadletter",
        "topic_batches": f"{run}.livepulse.batches",
        "topic_alerts": f"{run}.live.alerts",
        "partitions": str(TRUTH["config"]["partitions"]),
        # every address, without a web config: the worker must warn (once) that it is open
        "web_host": "0.0.0.0",
        "web_advertised_host": "127.0.0.1",
    }
    tmp = tmp_path_factory.mktemp("screen")
    with running_pipeline(tmp, livepulse_broker, **names) as pipeline:
        pipeline.replay(DATA / "session.jsonl")
        pipeline.wait_processed()
        close_and_wait(pipeline, TRUTH)
        yield pipeline


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


def test_a_worker_open_to_the_network_says_so_once(replayed: Pipeline) -> None:
    log = replayed.log.read_text(errors="replace")
    warnings = [line for line in log.splitlines() if "are open to anyone" in line]
    assert len(warnings) == 1 and "LIVEPULSE_WEB_CONFIG_FILE" in warnings[0], warnings


def _values(page: Any, selector: str) -> dict[str, str]:
    """data-key -> data-value of every element matching ``selector``."""
    return page.eval_on_selector_all(
        selector, "els => Object.fromEntries(els.map(e => [e.dataset.key, e.dataset.value]))"
    )


def _same(shown: str, value: Any) -> bool:
    """A data-value equals a JSON value: "" for a missing one, else the number itself."""
    if value is None:
        return shown == ""
    return shown != "" and float(shown) == pytest.approx(float(value), rel=1e-12)


def _busiest(pipeline: Pipeline) -> str:
    """The room of the session with the most GMV over its retained windows."""
    rooms = [r["room_id"] for r in pipeline.rooms()]
    details = {r: pipeline.room(r) or {"windows": []} for r in rooms}
    return max(rooms, key=lambda r: sum(w["gmv_cents"] for w in details[r]["windows"]))


def test_room_screen_shows_the_rooms_numbers_and_follows_new_events(
    replayed: Pipeline, browser: Browser, tmp_path: Path
) -> None:
    room_id = _busiest(replayed)
    detail = replayed.room(room_id)
    assert detail is not None
    last = [w for w in detail["windows"] if w["closed"]][-1]
    page = browser.page(1280, 900)
    page.goto(f"{replayed.base_url}/screen/{room_id}")
    page.wait_for_function(
        "w => document.body.dataset.lastWindow === String(w)", arg=last["window_start"]
    )
    # every number the page shows is the worker's (issue 15's fields included: a missing
    # field would show "–" and must fail here, not pass as an empty value)
    funnel = _values(page, "#funnel [data-key^='last.']")
    assert len(funnel) >= 16, funnel
    for key, shown in funnel.items():
        field = key.removeprefix("last.")
        assert field in last, f"the worker does not send {field}"
        assert _same(shown, last[field]), (key, shown, last[field])
    for field in ("impression_users", "viewers", "product_impression_users", "clicker_users"):
        assert last[field] is not None and funnel[f"last.{field}"] != "", field
    assert page.inner_text("#h-late") == str(detail["late_events"])
    assert "–" not in page.inner_text(".tile:has(#h-late)")  # no placeholder for dead letters
    session = detail["session"]
    tiles = [("h-gmv", "gmv_cents"), ("h-viewers", "viewers"), ("h-buyers", "buyers")]
    tiles += [("h-online", "online_now"), ("h-peak", "online_peak")]
    for tile, key in tiles:
        shown = page.get_attribute(f"#{tile}", "data-value")
        assert session[key] is not None and _same(shown, session[key]), (tile, shown, session)
        assert page.inner_text(f"#{tile}") != "–", tile
    rolling = detail["rolling"]["10"]
    compared = _values(page, "[data-key^='rolling.']")
    for part in ("current", "previous"):
        for key in ("gmv_cents", "viewers", "buyers"):
            value = rolling[part][key]
            assert _same(compared[f"rolling.{part}.{key}"], value), (part, key, value)
    assert rolling["current"]["gmv_cents"], "the last 10 minutes of the busiest room sold"
    products = _values(page, "[data-key^='product.']")
    assert last["products"], "the busiest room's last closed window has products"
    for item in last["products"]:
        for key in ("gmv_cents", "product_clicks", "orders_paid"):
            name = f"product.{item['product_id']}.{key}"
            assert _same(products[name], item[key]), name
    # the curves: one point per closed window that has the value (the open one dashed apart)
    closed = [w for w in detail["windows"] if w["closed"]]
    assert all("online_end" in w for w in closed)
    for chart, key in [("c-enters", "enters"), ("c-gmv", "gmv_cents"), ("c-online", "online_end")]:
        points = page.eval_on_selector_all(
            f"#{chart} polyline.line:not(.provisional)",
            "ls => ls.map(l => l.getAttribute('points').split(' ').length)",
        )
        drawn = sum(w[key] is not None for w in closed)
        assert drawn and sum(points) == drawn, chart
    page.screenshot(path=str(tmp_path / "room-1280.png"), full_page=True)

    # new events in a new (open) window: the page shows them, provisional, without a reload
    at = TRUTH["config"]["end_ms"] + 3 * TRUTH["config"]["window_ms"]
    with ThreadPoolExecutor(1) as thread:  # Playwright's sync API holds this thread's loop
        thread.submit(asyncio.run, _enter(replayed, room_id, at, 7)).result()
    page.wait_for_function(
        "() => document.querySelector(\"[data-key='open.enters']\")?.dataset.value === '7'",
        timeout=20_000,
    )
    assert "provisional" in page.inner_text("#status")
    phone = browser.page(390, 844, is_mobile=True, device_scale_factor=2)
    phone.goto(f"{replayed.base_url}/screen/{room_id}")
    phone.wait_for_function("() => document.body.dataset.lastWindow")
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    phone.screenshot(path=str(tmp_path / "room-390.png"), full_page=True)
    assert not browser.errors, browser.errors
    print(f"\nscreenshots: {tmp_path}/room-1280.png, {tmp_path}/room-390.png")


def test_all_rooms_page_lists_every_room_sorted_and_filtered(
    replayed: Pipeline, browser: Browser, tmp_path: Path
) -> None:
    rows = {r["room_id"]: r for r in replayed.json("/rooms?limit=5000")["rooms"]}
    page = browser.page(1280, 900)
    page.goto(replayed.base_url + "/")
    wait_until(lambda: page.locator("#body tr").count() == len(rows), 20, "every room listed")
    # each row's numbers are the worker's, issue 15's session block included (every room of
    # the session; the flush events' rooms have open windows only)
    session_rooms = {r["room_id"] for r in replayed.rooms()}
    assert session_rooms and session_rooms <= set(rows)
    columns = [("gmv_last", "last_closed", "gmv_cents"), ("gmv", "session", "gmv_cents")]
    columns += [("viewers", "session", "viewers"), ("online", "session", "online_now")]
    columns += [("peak", "session", "online_peak")]
    for col, block, field in columns:
        for room_id, value in zip(_column(page, "room"), _column(page, col), strict=True):
            if room_id in session_rooms:
                expected = (rows[room_id].get(block) or {}).get(field)
                assert expected is not None, f"{room_id}: the worker sends no {block}.{field}"
                assert _same(value, expected), (room_id, col, value, expected)
    assert page.locator("#body svg.spark").count() == len(rows)
    # the column buttons sort: room ids (first click a-z, second z-a), session GMV and
    # viewers (highest first, rooms without the value last); no room is alerting
    assert not any(r["alerts"] for r in rows.values())
    page.click("th[data-col=room] button")
    assert _column(page, "room") == sorted(rows)
    page.click("th[data-col=room] button")
    assert _column(page, "room") == sorted(rows, reverse=True)
    for col, block, field in [("gmv", "session", "gmv_cents"), ("viewers", "session", "viewers")]:
        page.click(f"th[data-col={col}] button")
        order = [r for r in _column(page, "room") if r in session_rooms]
        values = [float(rows[r][block][field]) for r in order]
        # the session's rooms differ in these, so the order is the column's, not the ids'
        assert values == sorted(values, reverse=True) and len(set(values)) > 1, (col, values)
        shown = _column(page, col)
        present = [v for v in shown if v]
        assert shown[: len(present)] == present and len(present) >= len(order), col
    page.screenshot(path=str(tmp_path / "rooms-1280.png"), full_page=True)
    room_id = _busiest(replayed)
    page.fill("#filter", room_id)
    assert page.locator("#body tr").count() == 1
    # keyboard only: Tab from the filter reaches the room's link, Enter opens its screen
    for _ in range(20):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.closest('tr')?.dataset.room") == room_id:
            break
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/screen/{room_id}")
    phone = browser.page(390, 844, is_mobile=True, device_scale_factor=2)
    phone.goto(replayed.base_url + "/")
    wait_until(lambda: phone.locator("#body tr").count() == len(rows), 20, "rooms on a phone")
    phone.screenshot(path=str(tmp_path / "rooms-390.png"), full_page=True)
    assert not browser.errors, browser.errors


def _column(page: Any, col: str) -> list[str]:
    """The data-value of a column of the all-rooms table, top to bottom (room: the ids)."""
    if col == "room":
        return page.eval_on_selector_all("#body tr", "trs => trs.map(tr => tr.dataset.room)")
    return page.eval_on_selector_all(
        f"#body tr td[data-col={col}]", "tds => tds.map(td => td.dataset.value)"
    )


async def _enter(pipeline: Pipeline, room_id: str, at_ms: int, n: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=pipeline.settings.bootstrap_servers, acks="all")
    await producer.start()
    try:
        for i in range(n):
            event = {
                "event_id": f"screen-{uuid.uuid4().hex}",
                "room_id": room_id,
                "user_id": f"screen-u{i}",
                "ts": at_ms + i,
                "type": "enter",
            }
            await producer.send_and_wait(
                pipeline.settings.topic_views, orjson.dumps(event), key=room_id.encode()
            )
    finally:
        await producer.stop()


def test_alert_episodes_are_shaded_while_active_and_after_they_end(
    replayed: Pipeline, browser: Browser
) -> None:
    """The worker's answer with an alert added in flight (Playwright routes the request): the
    curves shade the episode from its window on, and keep it once the alert has gone."""
    room_id = _busiest(replayed)
    detail = replayed.room(room_id)
    assert detail is not None
    since = detail["windows"][-3]["window_start"]
    alert = {"kind": "payment_trouble", "product_id": None, "since": since, "severity": "page"}
    firing = {"on": True}
    shift: dict[str, Any] = {}

    def answer(route: Any) -> None:
        body = orjson.loads(route.fetch().body())
        body["alerts"] = [alert] if firing["on"] else []
        body.update(shift)
        route.fulfill(body=orjson.dumps(body), content_type="application/json")

    page = browser.page(1280, 900)
    page.route(f"**/rooms/{room_id}", answer)
    page.goto(f"{replayed.base_url}/screen/{room_id}")
    page.wait_for_selector("#c-enters rect.band")
    assert page.locator("#alerts li").inner_text().startswith("payment trouble since")
    drawn = page.locator(".chart:has(polyline)").count()  # curves with data
    assert drawn >= 3 and page.locator(".chart rect.band").count() == drawn
    firing["on"] = False
    page.wait_for_function("() => !document.querySelector('#alerts li')")
    page.wait_for_function(
        "() => document.querySelector('#c-enters rect.band title').textContent.includes('ended')"
    )
    assert page.evaluate("document.body.dataset.episodes") == "1"
    # once the retained windows have moved past the episode, the page forgets it
    newest = detail["windows"][-1]
    later = {**newest, "window_start": newest["window_end"], "closed": True}
    later["window_end"] = 2 * newest["window_end"] - newest["window_start"]
    shift["windows"] = [later]
    page.wait_for_function("() => document.body.dataset.episodes === '0'")
    assert page.locator(".chart rect.band").count() == 0
    assert not browser.errors, browser.errors


def test_alerting_rooms_come_first_and_dot_ids_get_no_link(
    replayed: Pipeline, browser: Browser
) -> None:
    """Two rooms made alerting in flight (Playwright routes the merged list) lead the table
    whatever the sort; rooms "." and ".." (no URL path can name them) are listed unlinked."""
    rows = sorted(r["room_id"] for r in replayed.json("/rooms?limit=5000")["rooms"])
    alerting = rows[-2:]  # last by id: first only because they alert

    def answer(route: Any) -> None:
        body = orjson.loads(route.fetch().body())
        for row in body["rooms"]:
            row["alerts"] = ["payment_trouble"] if row["room_id"] in alerting else []
        body["rooms"] += [{"room_id": ".", "alerts": []}, {"room_id": "..", "alerts": []}]
        route.fulfill(body=orjson.dumps(body), content_type="application/json")

    page = browser.page(1280, 900)
    page.route("**/screen/api/rooms", answer)
    page.goto(replayed.base_url + "/")
    wait_until(lambda: page.locator("#body tr").count() == len(rows) + 2, 20, "rooms listed")
    page.click("th[data-col=room] button")  # room ids a-z
    assert _column(page, "room") == [*alerting, ".", "..", *rows[:-2]]
    assert page.locator("#body tr.alerting").count() == 2
    page.click("th[data-col=gmv] button")  # session GMV: the alerting rooms still lead
    assert _column(page, "room")[:2] == alerting
    dots = page.locator("#body tr[data-room='.'] a, #body tr[data-room='..'] a")
    assert dots.count() == 0 and page.locator("#body tr[data-room='..']").inner_text() != ""
    assert not browser.errors, browser.errors


def test_a_malformed_escape_in_the_room_address_is_shown_as_typed(
    replayed: Pipeline, browser: Browser
) -> None:
    page = browser.page(1280, 900)
    room = {"room_id": "x", "currency": "CNY", "alerts": [], "windows": [], "late_events": 0}
    page.route(
        "**/rooms/**",
        lambda route: route.fulfill(body=orjson.dumps(room), content_type="application/json"),
    )
    page.goto(f"{replayed.base_url}/screen/bad%E0%A4")
    page.wait_for_function(
        "() => document.getElementById('status').textContent.includes('updated')"
    )
    assert page.inner_text("#room-id") == "bad%E0%A4"
    assert not browser.errors, browser.errors
