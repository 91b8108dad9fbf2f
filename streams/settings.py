"""The one settings object. Every knob of LivePulse lives here.

Values come from keyword arguments (command-line options), then from environment variables
prefixed ``LIVEPULSE_`` (e.g. ``LIVEPULSE_WINDOW_SECONDS=60``), then from the defaults below.
"""

from __future__ import annotations

import dataclasses
import inspect
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from streams.core.detector import DetectorConfig

if TYPE_CHECKING:
    from streams.worker.web_auth import WebConfig


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="LIVEPULSE_", env_nested_delimiter="__", extra="forbid", frozen=True
    )
    _web_config: Any = PrivateAttr(None)  # WebConfig | None, see web_config

    # --- Kafka ---------------------------------------------------------------------------
    broker: str = Field(
        "kafka://127.0.0.1:9092",
        description="Bootstrap servers, Faust style: kafka://host:port[;kafka://host:port].",
    )
    app_id: str = Field("livepulse", description="Faust app id; also the consumer group prefix.")
    partitions: int = Field(4, ge=1, description="Partitions of every topic (co-partitioned).")
    topic_views: str = Field("live.views", description="Source: impression, enter, leave.")
    topic_clicks: str = Field(
        "live.clicks", description="Source: product_impression, product_click."
    )
    topic_orders: str = Field("live.orders", description="Source: created, paid, refunded.")
    topic_deadletter: str = Field(
        "live.deadletter", description="Invalid records, unchanged, with reason headers."
    )
    topic_alerts: str = Field(
        "live.alerts", description="In-stream detector output: alert and resolve events."
    )
    topic_batches: str = Field(
        "livepulse.batches", description="Internal topic: validated events, batched per partition."
    )
    replication_factor: int | None = Field(
        None,
        ge=1,
        description="Replicas of every topic the worker creates (internal, dead-letter, alerts, "
        "changelog); unset: 3, or the cluster's broker count when it has fewer (1 on the "
        "embedded broker).",
    )
    min_insync_replicas: int | None = Field(
        None,
        ge=1,
        description="min.insync.replicas of those topics (writes are acks=all); unset: one "
        "less than the replication factor, at least 1.",
    )
    topic_retention_hours: float = Field(
        168.0,
        gt=0,
        description="retention.ms of the topics the worker creates (the changelog is compacted "
        "instead).",
    )

    # --- Kafka security (managed clusters) ----------------------------------------------
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="How every Kafka client connects."
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "PLAIN", description="SASL mechanism for SASL_PLAINTEXT and SASL_SSL."
    )
    sasl_username: str | None = Field(None, description="SASL user name.")
    sasl_password: SecretStr | None = Field(
        None, description="SASL password; never logged or exported."
    )
    ssl_cafile: Path | None = Field(
        None,
        description="CA bundle (PEM) that signed the brokers' certificates; "
        "the system's CAs when unset.",
    )
    ssl_certfile: Path | None = Field(None, description="Client certificate (PEM), for mTLS.")
    ssl_keyfile: Path | None = Field(None, description="Client private key (PEM), for mTLS.")
    ssl_key_password: SecretStr | None = Field(
        None, description="Password of the client private key."
    )
    ssl_check_hostname: bool = Field(
        True, description="Check that broker certificates name the host connected to."
    )

    # --- Event time ------------------------------------------------------------------------
    window_seconds: int = Field(60, ge=1, description="Tumbling window size, aligned to the epoch.")
    grace_seconds: float = Field(5.0, ge=0, description="Allowed out-of-orderness per partition.")
    idle_timeout_seconds: float = Field(
        30.0,
        gt=0,
        description="Wall-clock silence after which a topic-partition stops holding "
        "the watermark back.",
    )
    max_skew_seconds: float = Field(
        60.0,
        ge=0,
        description="Event times further ahead of the wall clock are invalid (reason clock); "
        "an event ahead by less is applied, but moves its topic-partition's clock only up to "
        "the wall clock, so it cannot make on-time events late.",
    )
    retention_windows: int = Field(60, ge=1, description="Closed windows kept per room.")
    products_per_window: int = Field(
        50,
        ge=1,
        description="Products a closed window keeps by name, the busiest first; the rest are "
        "summed as product __other__ (an open window names up to four times as many).",
    )
    rolling_windows: Annotated[tuple[int, ...], NoDecode] = Field(
        (5, 10),
        description="The N of each room's rolling block (its last N closed windows against "
        "the N before), comma-separated; 2 x the largest must not exceed "
        "LIVEPULSE_RETENTION_WINDOWS.",
    )
    dedup_max_ids_per_window: int = Field(
        200_000,
        ge=0,
        description="Event ids (and order ids) a room remembers per window to count each "
        "event once; beyond, events count without that check. Bounds the dedup memory.",
    )

    # --- Ingest stage ----------------------------------------------------------------------
    ingest_process: bool = Field(
        True,
        description="Run the ingest stage in a child process of the worker (a core of its "
        "own; it stops with the worker and is restarted if it exits); false: a task in the "
        "worker's process.",
    )
    ingest_max_records: int = Field(
        5000, ge=1, description="Records per fetch in the ingest stage."
    )
    ingest_fetch_ms: int = Field(100, ge=1, description="Longest wait for one ingest fetch.")
    agent_fetch_ms: int = Field(
        100, ge=1, description="Longest wait for one fetch of envelopes by the Faust agent."
    )
    tick_seconds: float = Field(
        1.0, gt=0, description="Empty batches keep an idle partition's watermark rule running."
    )
    envelope_max_bytes: int = Field(
        786_432,
        ge=16_384,
        le=16 * 1024 * 1024,
        description="Largest envelope on the internal topic; below the 1 MB a stock broker "
        "accepts per record.",
    )

    # --- In-stream detector ------------------------------------------------------------------
    detector: DetectorConfig = Field(
        default_factory=DetectorConfig,
        description="Thresholds of the conversion-drop detector, one variable each: "
        "LIVEPULSE_DETECTOR__<FIELD> (e.g. LIVEPULSE_DETECTOR__MIN_ENTERS=100); the fields "
        "and their meaning are documented on streams.core.detector.DetectorConfig.",
    )

    # --- Worker ----------------------------------------------------------------------------
    web_host: str = Field("127.0.0.1", description="Address the HTTP server binds to.")
    web_config_file: Path | None = Field(
        None,
        description="TLS and basic auth for every page but /health and /ready, in the "
        "Prometheus exporter toolkit's web config format (tls_server_config, "
        "basic_auth_users with bcrypt hashes; docs/security.md); unset: plain http, open.",
    )
    web_advertised_host: str | None = Field(
        None,
        description="Host name other workers reach this one at (Faust's canonical URL); "
        "unset: the bind address, or this machine's host name when it binds every address.",
    )
    web_port: int = Field(
        6066, ge=1, le=65535, description="Port of the live screen (/), /metrics, /rooms, /ready."
    )
    metrics_products: int = Field(
        5,
        ge=0,
        description="Products per exported room with their own /metrics series (the top of "
        "its last closed window by GMV).",
    )
    metrics_max_rooms: int = Field(
        5_000,
        ge=1,
        description="Rooms with their own /metrics series (the top rooms by GMV); the rest "
        'are summed into room_id="__other__" (render times at this cap: `make bench`).',
    )
    state_dir: Path = Field(
        Path("state"), description="Faust data directory (RocksDB state), demo logs."
    )
    store: Literal["memory", "rocksdb"] = Field(
        "memory",
        description="Where the worker keeps table state between flushes: memory (rebuilt from "
        "the changelog at start) or rocksdb (in state_dir; a restart reads only the "
        "changelog's tail).",
    )
    changelog_flush_seconds: float = Field(
        5.0,
        gt=0,
        description="Changed room states go to the changelog at most this often; a "
        "crash replays at most this much input (plus the commit interval), which the rooms' "
        "applied offsets make harmless. Each flush rewrites every changed room's open windows, "
        "so shorter costs CPU at every active room (docs/durability.md).",
    )
    commit_interval_seconds: float = Field(
        2.8, gt=0, description="How often Faust commits the offsets of flushed envelopes."
    )
    standby_replicas: int = Field(1, ge=0, description="Faust standby copies of each table.")
    rebalance_timeout_seconds: float = Field(
        60.0,
        gt=0,
        description="Consumer-group rebalance timeout; the embedded broker holds "
        "JoinGroup this long, so tests and the demo use ~3 s.",
    )
    session_timeout_seconds: float = Field(30.0, gt=0, description="Consumer session timeout.")
    heartbeat_interval_seconds: float = Field(3.0, gt=0, description="Consumer heartbeat.")
    loglevel: str = Field("info", description="Worker log level.")

    @field_validator("broker")
    @classmethod
    def _broker_has_hosts(cls, value: str) -> str:
        if not _hosts(value):
            raise ValueError("expected kafka://host:port[;kafka://host:port]")
        return value

    @field_validator("ssl_cafile", "ssl_certfile", "ssl_keyfile")
    @classmethod
    def _file_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"no such file: {value}")
        return value

    @field_validator("rolling_windows", mode="before")
    @classmethod
    def _rolling_is_a_list(cls, value: object) -> object:
        """``5,10`` (also ``[5, 10]`` or ``(5, 10)``) -> (5, 10); at least one, each >= 1."""
        numbers = value
        if isinstance(value, str):
            parts = [p.strip() for p in value.strip("[]() ").split(",")]
            numbers = tuple(int(p) if p.isdigit() else -1 for p in parts)
        if isinstance(numbers, (list, tuple)):
            if not numbers or any(type(n) is not int or n < 1 for n in numbers):
                raise ValueError(
                    f"expected positive whole numbers separated by commas, got {value!r}"
                )
            return tuple(sorted(set(numbers)))
        return value

    @field_validator("detector")
    @classmethod
    def _detector_is_usable(cls, value: DetectorConfig) -> DetectorConfig:
        value.check()
        return value

    @model_validator(mode="after")
    def _web_config_is_usable(self) -> Settings:
        """The web config file, parsed once here: every user of it reads :attr:`web_config`."""
        if self.web_config_file is not None:
            from streams.worker.web_auth import load  # bcrypt and yaml only when it is set

            try:
                self._web_config = load(self.web_config_file)
            except ValueError as exc:
                raise ValueError(f"LIVEPULSE_WEB_CONFIG_FILE: {exc}") from None
        return self

    @model_validator(mode="after")
    def _security_is_complete(self) -> Settings:
        if self.security_protocol.startswith("SASL_") and (
            not self.sasl_username or self.sasl_password is None
        ):
            raise ValueError(
                f"{self.security_protocol} needs LIVEPULSE_SASL_USERNAME and "
                "LIVEPULSE_SASL_PASSWORD"
            )
        if self.ssl_keyfile is not None and self.ssl_certfile is None:
            raise ValueError("LIVEPULSE_SSL_KEYFILE needs LIVEPULSE_SSL_CERTFILE")
        return self

    @model_validator(mode="after")
    def _times_agree(self) -> Settings:
        """Settings that contradict each other, refused with the rule they break."""
        window_s = self.window_seconds
        if self.grace_seconds >= window_s * self.retention_windows:
            raise ValueError(
                "LIVEPULSE_GRACE_SECONDS must be shorter than LIVEPULSE_WINDOW_SECONDS x "
                "LIVEPULSE_RETENTION_WINDOWS: a room would expire before its windows close"
            )
        if 2 * max(self.rolling_windows) > self.retention_windows:
            raise ValueError(
                "LIVEPULSE_ROLLING_WINDOWS: 2 x its largest N "
                f"({2 * max(self.rolling_windows)}) exceeds LIVEPULSE_RETENTION_WINDOWS "
                f"({self.retention_windows}): the span before the last N windows would not be kept"
            )
        if self.tick_seconds >= self.idle_timeout_seconds:
            raise ValueError(
                "LIVEPULSE_TICK_SECONDS must be shorter than LIVEPULSE_IDLE_TIMEOUT_SECONDS: "
                "the idle rule acts on ticks"
            )
        if self.ingest_fetch_ms / 1000 >= self.idle_timeout_seconds:
            raise ValueError(
                "LIVEPULSE_INGEST_FETCH_MS must be shorter than LIVEPULSE_IDLE_TIMEOUT_SECONDS: "
                "a topic is idle only after fetches saw it quiet"
            )
        if self.heartbeat_interval_seconds >= self.session_timeout_seconds:
            raise ValueError(
                "LIVEPULSE_HEARTBEAT_INTERVAL_SECONDS must be shorter than "
                "LIVEPULSE_SESSION_TIMEOUT_SECONDS"
            )
        if (
            self.replication_factor is not None
            and self.min_insync_replicas is not None
            and self.min_insync_replicas > self.replication_factor
        ):
            raise ValueError(
                "LIVEPULSE_MIN_INSYNC_REPLICAS must not exceed LIVEPULSE_REPLICATION_FACTOR"
            )
        return self

    @property
    def window_ms(self) -> int:
        return self.window_seconds * 1000

    @property
    def grace_ms(self) -> int:
        return round(self.grace_seconds * 1000)

    @property
    def max_skew_ms(self) -> int:
        return round(self.max_skew_seconds * 1000)

    @property
    def source_topics(self) -> tuple[str, str, str]:
        """Source topics in the order of :class:`streams.core.contract.Source`."""
        return (self.topic_views, self.topic_clicks, self.topic_orders)

    @property
    def web_config(self) -> WebConfig | None:
        """TLS and users of the web pages (None: plain http, open), parsed at validation."""
        return self._web_config

    @property
    def advertised_host(self) -> str:
        if self.web_advertised_host:
            return self.web_advertised_host
        if self.web_host in ("0.0.0.0", "::", ""):
            return socket.gethostname()
        return self.web_host

    @property
    def bootstrap_servers(self) -> list[str]:
        """The broker list as aiokafka wants it."""
        return _hosts(self.broker)


def _hosts(url: str) -> list[str]:
    hosts = []
    for part in url.replace(",", ";").split(";"):
        part = part.strip()
        if "://" in part:
            part = part.split("://", 1)[1]
        part = part.rstrip("/")
        if part:
            hosts.append(part)
    return hosts


def explain(error: ValidationError) -> str:
    """One readable line for a bad setting, naming the environment variable behind it."""
    parts = []
    for err in error.errors():
        name = "__".join(str(x) for x in err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        parts.append(f"LIVEPULSE_{name.upper()}: {message}" if name else message)
    return "invalid settings: " + "; ".join(parts)


def markdown_table() -> str:
    """The settings as docs/settings.md shows them (``python -m streams.settings``; tested)."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        if isinstance(default, DetectorConfig):
            for key, (value, doc) in _detector_docs().items():
                rows.append(f"| `LIVEPULSE_DETECTOR__{key.upper()}` | `{value}` | {doc} |")
            continue
        if isinstance(default, tuple):
            default = ",".join(str(n) for n in default)
        default = "unset" if default is None else f"`{default}`"
        rows.append(f"| `LIVEPULSE_{name.upper()}` | {default} | {field.description} |")
    return "\n".join(rows) + "\n"


def _detector_docs() -> dict[str, tuple[object, str]]:
    """Each detector threshold's default and its ``#:`` comment in DetectorConfig (a comment
    above several fields is theirs together, e.g. the per-kind ratios)."""
    docs: dict[str, str] = {}
    comment: list[str] = []
    after_field = False
    for line in inspect.getsource(DetectorConfig).splitlines():
        line = line.strip()
        if line.startswith("#:"):
            if after_field:
                comment, after_field = [], False
            comment.append(line[2:].strip())
        elif line.split(":", 1)[0].isidentifier() and ":" in line and comment:
            docs[line.split(":", 1)[0]] = " ".join(comment)
            after_field = True
    defaults = DetectorConfig()
    return {
        f.name: (getattr(defaults, f.name), docs.get(f.name, ""))
        for f in dataclasses.fields(DetectorConfig)
    }


if __name__ == "__main__":
    print(markdown_table(), end="")
