"""The /metrics text for rooms: a golden file, running totals, the export cap, escaping."""

from __future__ import annotations

import asyncio
import os
import random
import re
import subprocess
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from streams.core.contract import Ev, Kind
from streams.core.currencies import CURRENCIES
from streams.core.detector import AlertEvent
from streams.core.processor import PartitionProcessor
from streams.core.rooms import RoomState
from streams.worker.metrics import OTHER_ROOMS, PipelineCollector, PipelineMetrics, RoomExposition
from tests.support import scenario
from tests.support.events import BASE, CNY, config, flush, number_by_topic
from tests.support.promtool import promtool

GOLDEN = Path(__file__).parent.parent / "data" / "golden.metrics"
TOPICS = ("live.views", "live.clicks", "live.orders")


def _run(rooms: list[str]) -> tuple[list[RoomState], CollectorRegistry]:
    """The hand-computed scenario for each room, through the real processor and counters."""
    registry = CollectorRegistry()
    metrics = PipelineMetrics(registry)
    metrics.start(TOPICS)
    proc = PartitionProcessor(0, config())
    bodies = [body for room in rooms for _, body in scenario.events(room, BASE)]
    for batch in (number_by_topic(bodies), flush([1000, 1000, 1000])):
        out = proc.process(batch)
        metrics.record(out, TOPICS)
    return list(proc.rooms.values()), registry


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_exposition_matches_the_golden_file_and_promtool_accepts_it(tmp_path: Path) -> None:
    """Any change to a metric name, label or value shows up as a diff of this file in review.

    Regenerate with ``LIVEPULSE_UPDATE_GOLDEN=1 pytest tests/worker/test_metrics.py``.
    """
    states, registry = _run(["r1", 'room "quoted" \\ two'])
    text = generate_latest(registry).decode() + RoomExposition(60_000, 100).render(states)
    if os.environ.get("LIVEPULSE_UPDATE_GOLDEN"):
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text()
    check = subprocess.run(
        [promtool(), "check", "metrics"], input=text, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_running_totals_are_the_sums_of_the_hand_computed_windows() -> None:
    states, _ = _run(["r1"])
    samples = _samples(RoomExposition(60_000, 100).render(states))
    windows = scenario.expected_closed_windows(BASE)
    room = (("room_id", "r1"),)
    money = (("currency", "CNY"), ("room_id", "r1"))
    assert (
        samples[("livepulse_room_gmv_total", money)] == sum(w["gmv_cents"] for w in windows) / 100
    )
    for field, metric, divisor in (
        ("impressions", "livepulse_room_impressions_total", 1),
        ("enters", "livepulse_room_enters_total", 1),
        ("product_clicks", "livepulse_room_product_clicks_total", 1),
        ("orders_created", "livepulse_room_orders_created_total", 1),
        ("orders_paid", "livepulse_room_orders_paid_total", 1),
        ("watch_ms_total", "livepulse_room_watch_seconds_total", 1000),
    ):
        assert samples[(metric, room)] == sum(w[field] for w in windows) / divisor, metric
    assert samples[("livepulse_room_late_events_total", room)] == scenario.EXPECTED_LATE


def test_totals_survive_the_changelog_and_outlive_retention() -> None:
    states, _ = _run(["r1"])
    (room,) = [s for s in states if s.room_id == "r1"]
    before = room.totals()
    room.closed.clear()  # as if retention had dropped every closed window
    before_records, head, _ = room.changes()
    assert head is not None
    records = {**dict(before_records), head[0]: head[1]}
    restored = PartitionProcessor.restore(0, config(), records).rooms["r1"]
    assert restored.totals() == before
    assert before.orders_paid == sum(
        w["orders_paid"] for w in scenario.expected_closed_windows(BASE)
    )


def test_rooms_beyond_the_cap_are_summed_into_other_and_the_top_by_gmv_are_kept() -> None:
    rooms = ["a", "b", "c", "d"]
    states, _ = _run(rooms)
    by_id = {s.room_id: s for s in states}
    # Give the rooms different GMVs: d > c > b > a.
    for i, room in enumerate(rooms):
        by_id[room].closed_totals.gmv_cents += i * 10_000
    exposition = RoomExposition(60_000, 2)
    samples = _samples(exposition.render([by_id[r] for r in rooms]))
    exported = {dict(k[1]).get("room_id") for k in samples if k[0] == "livepulse_room_gmv_total"}
    assert exported == {"c", "d"}
    assert [by_id[r].in_others for r in rooms] == [True, True, False, False]
    assert exposition.over_cap and samples[("livepulse_rooms_exported", ())] == 2
    # The aggregate carries counters only: no window gauges for a sum of rooms.
    assert not any(
        k[0].startswith("livepulse_room_window_") and ("room_id", OTHER_ROOMS) in k[1]
        for k in samples
    )


def test_other_counters_never_decrease_and_count_what_the_summed_rooms_apply() -> None:
    """Rooms move in and out of the top set (big orders), new rooms arrive over the cap and
    old ones expire; __other__ never goes down, and holds exactly the events its rooms applied
    while they were in it."""
    rng = random.Random(5)
    proc = PartitionProcessor(0, config(retention=3))
    exposition = RoomExposition(60_000, 3)
    offsets = [0, 0, 0]
    expected_enters = 0
    expected_gmv = 0
    previous: dict = {}
    t = BASE
    for step in range(300):
        t += rng.randrange(0, 4_000)
        batch = []
        for _ in range(rng.randrange(1, 12)):
            room = f"room-{rng.randrange(12 if step < 150 else 24)}"
            src = rng.choice([0, 2])
            kind = Kind.ENTER if src == 0 else Kind.ORDER_PAID
            value = 100 if src == 0 else rng.choice([100, 100, 100, 1_000_000])
            batch.append(Ev(src, offsets[src], t, room, int(kind), "u", value, "", 0, 0, 156))
            offsets[src] += 1
        flagged = {r for r, s in proc.rooms.items() if s.in_others}
        for ev in batch:  # new rooms start in the others while the worker is over the cap
            if ev.room in flagged or (ev.room not in proc.rooms and proc.over_cap):
                expected_enters += ev.kind == Kind.ENTER
                expected_gmv += ev.value if ev.kind == Kind.ORDER_PAID else 0
        proc.process(batch, None, 0b010)  # clicks idle: the watermark follows the others
        samples = _samples(exposition.render(proc.rooms.values(), proc.others))
        proc.over_cap = exposition.over_cap
        other = {k: v for k, v in samples.items() if ("room_id", OTHER_ROOMS) in k[1]}
        for key, value in other.items():
            assert value >= previous.get(key, 0), (step, key)
        previous.update(other)
    assert expected_enters > 100 and expected_gmv > 0
    enters = (("room_id", OTHER_ROOMS),)
    assert previous[("livepulse_room_enters_total", enters)] == expected_enters
    money = (("currency", "CNY"), ("room_id", OTHER_ROOMS))
    assert previous[("livepulse_room_gmv_total", money)] == expected_gmv / 100


def test_async_rendering_gives_the_same_text() -> None:
    states, _ = _run(["r1", "r2", "r3"])
    exposition = RoomExposition(60_000, 100)
    assert asyncio.run(exposition.render_async(states, chunk=1)) == exposition.render(states)


def test_the_metrics_reference_documents_every_family_and_nothing_else() -> None:
    served = {
        line.split()[2] for line in GOLDEN.read_text().splitlines() if line.startswith("# TYPE")
    }
    collector = PipelineCollector(lambda: 1, lambda: 0, lambda: {0: 1}, lambda: {("t", 0): 5})
    served |= {
        family.name + ("_total" if family.type == "counter" else "")
        for family in collector.collect()
    }
    docs = (Path(__file__).parents[2] / "docs" / "metrics.md").read_text()
    documented = set(re.findall(r"^\| `(livepulse_[a-z_]+)` \|", docs, re.MULTILINE))
    assert documented == served


def test_top_products_of_the_last_closed_window_and_the_online_gauges() -> None:
    """Seven products, top 3 exported by GMV then clicks; ``__other__`` never; online: two
    enters and a leave in the closed window, one more enter in the open one."""
    proc = PartitionProcessor(0, config())
    base = BASE
    events = [
        Ev(0, 0, base + 1_000, "r", int(Kind.ENTER), "a"),
        Ev(0, 1, base + 2_000, "r", int(Kind.ENTER), "b"),
        Ev(0, 2, base + 3_000, "r", int(Kind.LEAVE), "a", 5_000),
    ]
    offset = 0
    for n, (clicks, gmv) in enumerate([(1, 0), (4, 0), (2, 300), (9, 300), (1, 900), (3, 0)]):
        for _ in range(clicks):
            events.append(Ev(1, offset, base + 4_000, "r", 4, "u", 0, f"p{n}"))
            offset += 1
        if gmv:
            events.append(Ev(2, n, base + 5_000, "r", 6, "u", gmv, f"p{n}", 0, n + 1, 156))
    events.append(Ev(0, 3, base + 61_000, "r", int(Kind.ENTER), "c"))
    proc.process(events)
    proc.process(flush([4, offset, 6], at=base + 66_000))  # watermark 61 s: window 0 closes
    rooms = [proc.rooms["r"]]
    text = RoomExposition(60_000, 100, products=3).render(rooms)
    samples = _samples(text)
    products = {
        labels: value
        for (name, labels), value in samples.items()
        if name == "livepulse_product_window_clicks"
    }
    assert products == {
        (("product_id", "p4"), ("room_id", "r")): 1,
        (("product_id", "p3"), ("room_id", "r")): 9,
        (("product_id", "p2"), ("room_id", "r")): 2,
    }
    gmv = (
        "livepulse_product_window_gmv",
        (("currency", "CNY"), ("product_id", "p4"), ("room_id", "r")),
    )
    assert samples[gmv] == 9.0
    closed = (("room_id", "r"), ("window", "closed"))
    opened = (("room_id", "r"), ("window", "open"))
    assert samples["livepulse_room_window_online_viewers", closed] == 1
    assert samples["livepulse_room_window_online_viewers_peak", closed] == 2
    assert samples["livepulse_room_window_online_viewers", opened] == 2
    assert samples["livepulse_room_window_viewers", closed] == 2
    assert samples["livepulse_room_window_buyers", closed] == 1
    assert samples["livepulse_room_session_viewers", (("room_id", "r"),)] == 3
    assert samples["livepulse_room_session_online_viewers_peak", (("room_id", "r"),)] == 2
    none = RoomExposition(60_000, 100, products=0).render(rooms)
    assert "livepulse_product_window_clicks{" not in none


def test_every_event_counter_is_fed_from_the_stages_results() -> None:
    """The ingest stage's reads and dead letters, and the stateful stage's outcome (alerts and
    currency dead letters included), become counters through PipelineMetrics alone."""
    registry = CollectorRegistry()
    metrics = PipelineMetrics(registry)
    metrics.start(TOPICS)
    metrics.read("live.orders", 5, {"schema": 2, "partition": 1})
    proc = PartitionProcessor(0, config())
    cny = Ev(2, 0, BASE, "r", int(Kind.ORDER_CREATED), "", 100, "p", 1, 0, CNY)
    usd = Ev(2, 1, BASE, "r", int(Kind.ORDER_CREATED), "", 100, "p", 2, 0, CURRENCIES["USD"][0])
    out = proc.process([cny, usd])
    out.alerts.append(AlertEvent("r", "traffic_cut", "firing", BASE, BASE + 60_000, 0, 9, 5, "x"))
    metrics.record(out, TOPICS)
    samples = _samples(generate_latest(registry).decode())
    orders = ("topic", "live.orders")
    assert samples[("livepulse_events_consumed_total", (orders,))] == 5
    invalid = "livepulse_events_invalid_total"
    assert samples[(invalid, (("reason", "schema"), orders))] == 2
    assert samples[(invalid, (("reason", "partition"), orders))] == 1
    assert samples[(invalid, (("reason", "currency"), orders))] == 1
    assert samples[("livepulse_events_applied_total", (orders,))] == 1
    firing = (("kind", "traffic_cut"), ("state", "firing"))
    assert samples[("livepulse_alerts_total", firing)] == 1
