"""How settings become Kafka client configuration: TLS, SASL, and the agent's fetch wait.

No secured broker runs here, so these tests stop at the clients' configuration: the same
settings must give aiokafka (ingest, CLI) and Faust (the agent, tables) the same security.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import replace
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from pydantic import ValidationError

from streams.commands.demo import settings_env
from streams.settings import Settings, explain
from streams.worker.app import create_app
from streams.worker.security import client_options, faust_credentials
from tests.support.cli import one_line_error, run

TLS = Path(__file__).parent.parent / "data" / "tls"  # a throwaway test CA and client cert
SECRET = "s3cret-Pa55"


def _sasl_ssl(**extra: object) -> Settings:
    return Settings(
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="livepulse",
        sasl_password=SECRET,
        ssl_cafile=TLS / "ca.pem",
        **extra,
    )


def test_plaintext_by_default() -> None:
    assert client_options(Settings()) == {"security_protocol": "PLAINTEXT"}
    assert faust_credentials(Settings()) is None


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
def test_sasl_reaches_aiokafka_and_faust_alike(protocol: str, mechanism: str) -> None:
    s = Settings(
        security_protocol=protocol,
        sasl_mechanism=mechanism,
        sasl_username="livepulse",
        sasl_password=SECRET,
    )
    ours = client_options(s)
    faust = credentials_to_aiokafka_auth(faust_credentials(s))
    for options in (ours, faust):
        assert options["security_protocol"] == protocol
        assert options["sasl_mechanism"] == mechanism
        assert options["sasl_plain_username"] == "livepulse"
        assert options["sasl_plain_password"] == SECRET
        assert isinstance(options.get("ssl_context"), ssl.SSLContext) == (protocol == "SASL_SSL")


def test_tls_with_a_private_ca_and_a_client_certificate() -> None:
    s = Settings(
        security_protocol="SSL",
        ssl_cafile=TLS / "ca.pem",
        ssl_certfile=TLS / "client.pem",
        ssl_keyfile=TLS / "client.key",
        ssl_key_password="test-key-password",
        ssl_check_hostname=False,
    )
    options = client_options(s)
    context = options["ssl_context"]
    assert options["security_protocol"] == "SSL"
    assert context.check_hostname is False
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert "LivePulse test CA" in str(context.get_ca_certs())
    faust = credentials_to_aiokafka_auth(faust_credentials(s))
    assert faust["security_protocol"] == "SSL"
    assert isinstance(faust["ssl_context"], ssl.SSLContext)


def test_a_wrong_key_password_fails_when_the_context_is_built() -> None:
    s = Settings(
        security_protocol="SSL",
        ssl_certfile=TLS / "client.pem",
        ssl_keyfile=TLS / "client.key",
        ssl_key_password="wrong",
    )
    with pytest.raises(ssl.SSLError):
        client_options(s)


def test_aiokafka_clients_accept_the_options() -> None:
    async def build() -> None:
        options = client_options(_sasl_ssl())
        consumer = AIOKafkaConsumer(bootstrap_servers="kafka:9093", **options)
        producer = AIOKafkaProducer(bootstrap_servers="kafka:9093", **options)
        try:
            for client in (consumer._client, producer.client):
                assert client._security_protocol == "SASL_SSL"
                assert client._sasl_mechanism == "SCRAM-SHA-512"
                assert client._sasl_plain_password == SECRET
        finally:
            await consumer.stop()
            await producer.stop()

    asyncio.run(build())


def test_the_worker_app_carries_the_credentials() -> None:
    app = create_app(_sasl_ssl()).app
    auth = credentials_to_aiokafka_auth(app.conf.broker_credentials)
    assert auth["sasl_mechanism"] == "SCRAM-SHA-512"
    assert auth["security_protocol"] == "SASL_SSL"


def test_secrets_stay_out_of_reprs_and_errors() -> None:
    s = _sasl_ssl(ssl_key_password="key-" + SECRET)
    for text in (repr(s), str(s), s.model_dump_json()):
        assert SECRET not in text
    with pytest.raises(ValidationError) as bad:
        Settings(security_protocol="SASL_SSL", sasl_password=SECRET)
    line = explain(bad.value)
    assert SECRET not in line
    assert "needs LIVEPULSE_SASL_USERNAME and LIVEPULSE_SASL_PASSWORD" in line


def test_incomplete_security_settings_are_one_line_errors(tmp_path: Path) -> None:
    env = {"LIVEPULSE_SECURITY_PROTOCOL": "SASL_SSL", "LIVEPULSE_SASL_USERNAME": "u"}
    assert "LIVEPULSE_SASL_PASSWORD" in one_line_error(run("worker", env=env))
    env = {"LIVEPULSE_SSL_CAFILE": str(tmp_path / "missing.pem")}
    assert "LIVEPULSE_SSL_CAFILE" in one_line_error(run("produce", "x.jsonl", env=env))
    env = {"LIVEPULSE_SASL_MECHANISM": "GSSAPI"}
    assert "LIVEPULSE_SASL_MECHANISM" in one_line_error(run("worker", env=env))


def test_the_agent_consumer_waits_at_most_the_configured_fetch_time() -> None:
    async def build() -> int:
        app = create_app(Settings(agent_fetch_ms=42)).app
        thread = app.consumer._new_consumer_thread()
        consumer = thread._create_worker_consumer(app.transport)
        return consumer._fetch_max_wait_ms

    assert asyncio.run(build()) == 42


def test_settings_handed_to_child_processes_round_trip(monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo starts its worker with the settings as variables: secrets and the detector's
    thresholds must arrive as set, not masked or unparsable."""
    want = _sasl_ssl(ssl_key_password="kp")
    want = want.model_copy(
        update={"detector": replace(want.detector, min_enters=123, resolve_windows=3)}
    )
    for name, value in settings_env(want).items():
        monkeypatch.setenv(name, value)
    got = Settings()
    assert got.sasl_password.get_secret_value() == SECRET
    assert got.ssl_key_password.get_secret_value() == "kp"
    assert got.detector == want.detector
    assert got.model_dump() == want.model_dump()
