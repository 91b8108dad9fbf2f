"""A worker with TLS and basic auth on (LIVEPULSE_WEB_CONFIG_FILE): every page but /health and
/ready refuses a request without credentials, serves one with them, and a real Prometheus
scrapes it with the documented prometheus.yml (its basic_auth, plus https as documented)."""

from __future__ import annotations

import base64
import ssl
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest
import yaml

from streams.testing import Pipeline, free_port, running_pipeline
from tests.support.browser import chromium
from tests.support.prometheus_server import (
    DEPLOY,
    prepare_config,
    running_prometheus,
    wait_ready,
)
from tests.support.tls import self_signed

PASSWORD = (DEPLOY / "livepulse.password").read_text().strip()
PAGES = ["/", "/screen/some-room", "/screen/static/room.js", "/screen/api/rooms", "/rooms"]
PAGES += ["/rooms/some-room", "/metrics"]


class Secured:
    """The worker's https URL, and GETs with or without credentials."""

    def __init__(self, pipeline: Pipeline, cert: Path) -> None:
        self.pipeline = pipeline
        self.url = f"https://127.0.0.1:{pipeline.settings.web_port}"
        self.cert = cert
        self.context = ssl.create_default_context(cafile=str(cert))

    def get(self, path: str, user: str | None = None, password: str = "") -> tuple[int, dict]:
        headers = {}
        if user is not None:
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        request = urllib.request.Request(self.url + path, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10, context=self.context) as resp:
                return resp.status, dict(resp.headers)
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers)


@pytest.fixture(scope="module")
def secured(livepulse_broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    tmp = tmp_path_factory.mktemp("web-auth")
    cert, key = self_signed(tmp)
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(10)).decode()
    config = tmp / "web-config.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "tls_server_config": {"cert_file": cert.name, "key_file": key.name},
                "basic_auth_users": {"prometheus": hashed},
            }
        )
    )
    run = uuid.uuid4().hex[:8]
    names = {
        k: f"{run}.{v}"
        for k, v in {
            "topic_views": "views",
            "topic_clicks": "clicks",
            "topic_orders": "orders",
            "topic_deadletter": "deadletter",
            "topic_batches": "batches",
            "topic_alerts": "alerts",
        }.items()
    }
    overrides = {**names, "app_id": f"livepulse-auth-{run}", "web_config_file": str(config)}
    with running_pipeline(tmp, livepulse_broker, **overrides) as pipeline:
        yield Secured(pipeline, cert)


def test_pages_need_credentials(secured: Secured) -> None:
    for path in PAGES:
        status, headers = secured.get(path)
        assert status == 401, path
        assert headers["WWW-Authenticate"].startswith('Basic realm="LivePulse"'), path
        assert secured.get(path, "prometheus", PASSWORD + "x")[0] == 401, path
        assert secured.get(path, "nobody", PASSWORD)[0] == 401, path
    for path in ["/", "/screen/some-room", "/screen/api/rooms", "/rooms", "/metrics"]:
        assert secured.get(path, "prometheus", PASSWORD)[0] == 200, path
    for probe in ["/health", "/ready"]:
        assert secured.get(probe)[0] == 200, probe
    # plain http gets no page at all from a TLS listener
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(secured.url.replace("https", "http") + "/metrics", timeout=5)


def test_browser_with_credentials_sees_the_screen(secured: Secured) -> None:
    with chromium() as browser:
        page = browser.page(
            http_credentials={"username": "prometheus", "password": PASSWORD},
            ignore_https_errors=True,
        )
        page.goto(secured.url + "/")
        page.wait_for_function("() => document.getElementById('count').textContent !== ''")
        status = page.inner_text("#status")  # the merged list asked this worker over https
        assert "1 worker(s)" in status and "not answering" not in status, status
        assert not browser.errors, browser.errors


def test_prometheus_scrapes_with_the_documented_credentials(
    secured: Secured, tmp_path: Path
) -> None:
    port = secured.pipeline.settings.web_port
    path = prepare_config(tmp_path, [f"127.0.0.1:{port}"], f"127.0.0.1:{free_port()}")
    config = yaml.safe_load(path.read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "livepulse"]
    assert job["basic_auth"]["username"] == "prometheus"  # as committed
    # https, as prometheus.yml's comment documents for workers with tls_server_config
    job["scheme"] = "https"
    job["tls_config"] = {"ca_file": str(secured.cert)}
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    with running_prometheus(
        config=path, data=tmp_path / "data", log=tmp_path / "prometheus.log"
    ) as prometheus:
        wait_ready(prometheus)
        deadline = time.monotonic() + 30
        while True:
            up = prometheus.query('up{job="livepulse"}', time.time())
            if up and up[0]["value"][1] == "1":
                break
            assert time.monotonic() < deadline, (up, prometheus.tail())
            time.sleep(0.5)
        assert prometheus.query('count({__name__=~"livepulse_.+"})', time.time())
