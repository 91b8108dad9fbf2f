"""deploy/alertmanager/alertmanager.yml: amtool accepts it, routes room and pipeline alerts to
their receivers, and a real Alertmanager (on loopback) groups room alerts per room and mutes
them while a pipeline alert fires."""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.processes import free_port, serving
from tests.support.promtool import alertmanager, amtool

CONFIG = Path(__file__).parents[2] / "deploy" / "alertmanager" / "alertmanager.yml"
PLACEHOLDER = "http://alert-receiver.invalid/"

ROOM_ALERTS = [
    {"alertname": "LivePulseConversionDrop", "scope": "room", "room_id": "room-a"},
    {"alertname": "LivePulseConversionDrop", "scope": "room", "room_id": "room-b"},
    {"alertname": "LivePulsePaymentTrouble", "scope": "room", "room_id": "room-a"},
]
PIPELINE_ALERT = {"alertname": "LivePulseWorkerDown", "scope": "pipeline", "instance": "w:6066"}


def test_amtool_check_config() -> None:
    proc = subprocess.run(
        [amtool(), "check-config", str(CONFIG)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout
    assert "1 inhibit rules" in proc.stdout


def test_receivers_are_documented_placeholders() -> None:
    text = CONFIG.read_text()
    assert text.count(f"url: {PLACEHOLDER}") == 2
    assert "REPLACE" in text


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (ROOM_ALERTS[0], "livepulse-operations"),
        (PIPELINE_ALERT, "livepulse-oncall"),
        ({"alertname": "LivePulseWatermarkLag", "scope": "pipeline", "partition": "3"}, None),
        ({"alertname": "SomethingElse"}, "livepulse-oncall"),
    ],
)
def test_routes(labels: dict[str, str], receiver: str | None) -> None:
    receiver = receiver or "livepulse-oncall"
    proc = subprocess.run(
        [
            amtool(),
            "config",
            "routes",
            "test",
            f"--config.file={CONFIG}",
            f"--verify.receivers={receiver}",
            *(f"{k}={v}" for k, v in labels.items()),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == receiver


def _call(url: str, body: object = None) -> object:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        text = response.read().decode()
    return json.loads(text) if text.strip() else None


@pytest.fixture
def running(tmp_path: Path) -> Iterator[str]:
    """The real Alertmanager with our config, on loopback; the placeholder receivers point at a
    closed loopback port (nothing is notified within the test anyway: group_wait >= 10 s)."""
    binary = alertmanager()
    config = tmp_path / "alertmanager.yml"
    sink = f"http://127.0.0.1:{free_port()}/"
    config.write_text(
        re.sub(rf"url: {re.escape(PLACEHOLDER)}\S*", f"url: {sink}", CONFIG.read_text())
    )
    assert f"url: {PLACEHOLDER}" not in config.read_text()
    port = free_port()
    args = [
        binary,
        f"--config.file={config}",
        f"--storage.path={tmp_path / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
    ]
    base = f"http://127.0.0.1:{port}"
    with serving(args, base, tmp_path / "alertmanager.log", timeout=20, stop_timeout=10):
        yield base


def _wait_for(probe, what: str, timeout: float = 10):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_room_alerts_grouped_per_room_and_muted_by_a_pipeline_alert(running: str) -> None:
    _call(f"{running}/api/v2/alerts", [{"labels": labels} for labels in ROOM_ALERTS])

    def groups() -> list[tuple[tuple[tuple[str, str], ...], str, int]]:
        found = _call(f"{running}/api/v2/alerts/groups")
        return sorted(
            (tuple(sorted(g["labels"].items())), g["receiver"]["name"], len(g["alerts"]))
            for g in found  # type: ignore[union-attr]
            if g["alerts"]
        )

    _wait_for(lambda: len(groups()) == 3, "three groups")
    assert groups() == [
        (
            (("alertname", "LivePulseConversionDrop"), ("room_id", "room-a")),
            "livepulse-operations",
            1,
        ),
        (
            (("alertname", "LivePulseConversionDrop"), ("room_id", "room-b")),
            "livepulse-operations",
            1,
        ),
        (
            (("alertname", "LivePulsePaymentTrouble"), ("room_id", "room-a")),
            "livepulse-operations",
            1,
        ),
    ]

    def states() -> dict[str, str]:
        alerts = _call(f"{running}/api/v2/alerts")
        return {
            f"{a['labels']['alertname']}/{a['labels'].get('room_id', '')}": a["status"]["state"]
            for a in alerts  # type: ignore[union-attr]
        }

    assert set(states().values()) == {"active"}

    _call(f"{running}/api/v2/alerts", [{"labels": PIPELINE_ALERT}])

    def all_muted() -> dict[str, str] | None:
        found = states()
        return found if list(found.values()).count("suppressed") == 3 else None

    muted = _wait_for(all_muted, "the room alerts to be inhibited")
    assert muted == {
        "LivePulseConversionDrop/room-a": "suppressed",
        "LivePulseConversionDrop/room-b": "suppressed",
        "LivePulsePaymentTrouble/room-a": "suppressed",
        "LivePulseWorkerDown/": "active",
    }
