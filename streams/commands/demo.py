"""``livepulse demo``: broker, a small traffic source, a worker, and a live table of rooms."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer
from pydantic import SecretStr
from rich.console import Console
from rich.live import Live
from rich.table import Table

from streams.processes import stop
from streams.settings import Settings
from streams.worker import broker
from streams.worker.security import client_options

#: Fast group joins on the embedded broker (it holds JoinGroup for the rebalance timeout).
DEMO_DEFAULTS = {
    "rebalance_timeout_seconds": 3.0,
    "session_timeout_seconds": 10.0,
    "heartbeat_interval_seconds": 1.0,
}


def demo_settings(**options: object) -> Settings:
    """Settings for the demo: env and options win; otherwise the fast-join defaults."""
    overrides = {
        k: v for k, v in DEMO_DEFAULTS.items() if f"LIVEPULSE_{k.upper()}" not in os.environ
    }
    overrides.update({k: v for k, v in options.items() if v is not None})
    return Settings(**overrides)  # type: ignore[arg-type]


def settings_env(settings: Settings) -> dict[str, str]:
    """The settings as LIVEPULSE_ variables, to hand to a child process."""
    env = dict(os.environ)
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif dataclasses.is_dataclass(value):
            value = orjson.dumps(dataclasses.asdict(value)).decode()
        elif isinstance(value, tuple):
            value = ",".join(str(n) for n in value)
        env[f"LIVEPULSE_{name.upper()}"] = str(value)
    return env


class DemoTraffic:
    """A handful of rooms walking the funnel once a second, with event times of now."""

    def __init__(self, settings: Settings, rooms: int = 8, seed: int = 7) -> None:
        self.settings = settings
        self.rng = random.Random(seed)
        self.rooms = [
            (f"demo-room-{i:02d}", self.rng.uniform(20, 120), self.rng.uniform(0.02, 0.12))
            for i in range(1, rooms + 1)
        ]
        self.sequence = 0

    def _event(
        self, room: str, user: int, type_: str, ts: int, **extra: object
    ) -> tuple[str, bytes, bytes]:
        self.sequence += 1
        event = {
            "event_id": f"demo-{self.sequence}",
            "room_id": room,
            "user_id": f"u{user}",
            "ts": ts,
            "type": type_,
            **extra,
        }
        topics = self.settings.source_topics
        topic = (
            topics[0]
            if type_ in ("impression", "enter", "leave")
            else (topics[1] if type_.startswith("product_") else topics[2])
        )
        return topic, room.encode(), orjson.dumps(event)

    def second(self, now_ms: int) -> list[tuple[str, bytes, bytes]]:
        rng, out = self.rng, []
        for room, rate, paying in self.rooms:
            for _ in range(int(rng.expovariate(1 / rate))):
                user = rng.randrange(5000)
                ts = now_ms - rng.randrange(0, 1500)
                out.append(self._event(room, user, "impression", ts))
                if rng.random() > 0.35:
                    continue
                out.append(self._event(room, user, "enter", ts))
                product = f"p{rng.randrange(5)}"
                out.append(self._event(room, user, "product_impression", ts, product_id=product))
                if rng.random() < 0.3:
                    out.append(self._event(room, user, "product_click", ts, product_id=product))
                    if rng.random() < paying * 4:
                        order = dict(
                            order_id=f"o{self.sequence}",
                            product_id=product,
                            quantity=1,
                            amount_cents=rng.choice((990, 4990, 12900)),
                            currency="CNY",
                        )
                        out.append(self._event(room, user, "created", ts, **order))
                        if rng.random() < 0.85:
                            out.append(self._event(room, user, "paid", ts, **order))
                out.append(
                    self._event(room, user, "leave", ts, watch_ms=rng.randrange(1000, 60000))
                )
        return out

    async def run(self) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.bootstrap_servers,
            linger_ms=20,
            **client_options(self.settings),
        )
        await producer.start()
        try:
            while True:
                started = time.monotonic()
                for topic, key, value in self.second(int(time.time() * 1000)):
                    await producer.send(topic, value, key=key)
                await producer.flush()
                await asyncio.sleep(max(0.0, 1 - (time.monotonic() - started)))
        finally:
            await producer.stop()


def _get(url: str) -> dict | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return orjson.loads(resp.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None


def _table(payload: dict) -> Table:
    table = Table(title="LivePulse — open windows (updating every second)")
    for col in (
        "room",
        "window",
        "enters",
        "clicks",
        "paid",
        "conversion",
        "GMV",
        "GPM",
        "last closed conv.",
    ):
        table.add_column(col, justify="left" if col == "room" else "right")
    rows = sorted(
        payload.get("rooms", []), key=lambda r: -((r.get("open") or {}).get("gmv_cents", 0))
    )
    for room in rows:
        w, last = room.get("open") or {}, room.get("last_closed") or {}

        def pct(value: float | None) -> str:
            return "—" if value is None else f"{value:.1%}"

        table.add_row(
            room["room_id"],
            time.strftime("%H:%M", time.localtime(w["window_start"] / 1000)) if w else "—",
            str(w.get("enters", 0)),
            str(w.get("product_clicks", 0)),
            str(w.get("orders_paid", 0)),
            pct(w.get("conversion_rate")),
            f"{w.get('gmv_cents', 0) / 100:,.2f}",
            "—" if w.get("gpm") is None else f"{w['gpm']:,.0f}",
            pct(last.get("conversion_rate")),
        )
    return table


def run_demo(settings: Settings, duration: float | None, console: Console) -> None:
    state = Path(settings.state_dir)
    state.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    base = screen_url(settings)
    console.print(f"live screen: {base}/  (one room: {base}/screen/demo-room-01)")
    console.print(f"starting the embedded broker on {settings.broker}")
    with broker.embedded(settings, log=state / "demo-broker.log"):
        asyncio.run(broker.ensure_topics(settings))
        log_path = state / "demo-worker.log"
        console.print(f"starting the worker (log: {log_path})")
        with open(log_path, "ab") as log:
            worker = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", "worker"],
                env=settings_env(settings),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # stopped by us, before the broker, not by Ctrl-C
            )
        try:
            asyncio.run(_demo_loop(settings, worker, started, duration, console))
        except KeyboardInterrupt:
            console.print("stopping")
        finally:
            stop(worker, 15)


def screen_url(settings: Settings) -> str:
    """Where a browser on this machine finds the worker's pages."""
    host = settings.web_host if settings.web_host not in ("0.0.0.0", "::", "") else "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    config = settings.web_config
    scheme = "https" if config is not None and config.tls else "http"
    return f"{scheme}://{host}:{settings.web_port}"


async def _demo_loop(
    settings: Settings,
    worker: subprocess.Popen,
    started: float,
    duration: float | None,
    console: Console,
) -> None:
    base = f"http://{settings.web_host}:{settings.web_port}"
    traffic = asyncio.create_task(DemoTraffic(settings).run())
    try:
        while (_get(f"{base}/ready") or {}).get("ready") is not True:
            if worker.poll() is not None:
                raise SystemExit(f"the worker exited with code {worker.returncode}; see its log")
            await asyncio.sleep(0.2)
        console.print(f"ready after {time.monotonic() - started:.1f} s")
        console.print(
            f"  screen:   {screen_url(settings)}/\n"
            f"  metrics:  {base}/metrics\n  rooms:    {base}/rooms\n"
            f"  one room: {base}/rooms/demo-room-01"
        )
        console.print("Ctrl-C to stop")
        until = None if duration is None else time.monotonic() + duration
        with Live(console=console, refresh_per_second=2) as live:
            while until is None or time.monotonic() < until:
                payload = await asyncio.to_thread(_get, f"{base}/rooms")
                if payload is not None:
                    live.update(_table(payload))
                if worker.poll() is not None:
                    raise SystemExit(
                        f"the worker exited with code {worker.returncode}; see its log"
                    )
                await asyncio.sleep(1)
    finally:
        traffic.cancel()
