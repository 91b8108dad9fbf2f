"""The web config file: what it accepts, what it refuses (one line), and the password check."""

from __future__ import annotations

import asyncio
import base64
import logging
from pathlib import Path

import bcrypt
import pytest

from streams.worker import web_auth
from tests.support.cli import one_line_error, run
from tests.support.tls import self_signed

HASH = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(4)).decode()


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "web.yml"
    path.write_text(text)
    return path


def test_users_and_relative_tls_files(tmp_path: Path, tls_pair: tuple[Path, Path]) -> None:
    cert, key = tls_pair
    path = _write(
        tmp_path,
        f"tls_server_config:\n  cert_file: {cert.name}\n  key_file: {key.name}\n"
        f"basic_auth_users:\n  alice: '{HASH}'\n",
    )
    config = web_auth.load(path)
    assert config.tls and config.cert_file == cert and config.users == {"alice": HASH.encode()}
    assert config.server_context() is not None and config.client_context() is not None
    assert HASH not in repr(config)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("basic_auth_users: [", "is not YAML"),
        ("- a\n- b\n", "expected a mapping"),
        ("basic_auth_user:\n  a: b\n", "unknown keys ['basic_auth_user']"),
        ("basic_auth_users:\n  alice: plain-password\n", "user 'alice' is not a bcrypt hash"),
        ("tls_server_config:\n  cert_file: x.pem\n", "needs both cert_file and key_file"),
        ("tls_server_config:\n  cert_file: x.pem\n  key_file: x.key\n", "cannot use"),
        ("tls_server_config:\n  client_ca_file: x.pem\n", "takes cert_file and key_file only"),
    ],
)
def test_bad_files_are_refused_with_what_is_wrong(tmp_path: Path, text: str, says: str) -> None:
    with pytest.raises(ValueError, match=None) as refused:
        web_auth.load(_write(tmp_path, text))
    assert says in str(refused.value)


def test_a_bad_file_stops_the_worker_with_one_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "basic_auth_users:\n  alice: plain\n")
    line = one_line_error(run("worker", env={"LIVEPULSE_WEB_CONFIG_FILE": str(path)}))
    assert "LIVEPULSE_WEB_CONFIG_FILE" in line and "not a bcrypt hash" in line
    missing = one_line_error(run("worker", env={"LIVEPULSE_WEB_CONFIG_FILE": "/nonexistent.yml"}))
    assert "cannot read /nonexistent.yml" in missing


def test_basic_auth_checks_user_and_password() -> None:
    auth = web_auth.BasicAuth({"alice": HASH.encode()})

    async def check() -> list[bool]:
        return [
            await auth.allows(h)
            for h in (
                _basic("alice", "s3cret"),
                _basic("alice", "s3cret"),  # remembered: no second bcrypt
                _basic("alice", "wrong"),
                _basic("bob", "s3cret"),
                None,
                "Bearer x",
                "Basic !!!",
                "Basic " + base64.b64encode(b"no-colon").decode(),
            )
        ]

    assert asyncio.run(check()) == [True, True, False, False, False, False, False, False]


def test_one_warning_when_exposed_without_credentials(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    with caplog.at_level(logging.WARNING, logger=web_auth.__name__):
        web_auth.warn_if_exposed("127.0.0.1", 6066, None)
        assert not caplog.records
        web_auth.warn_if_exposed("0.0.0.0", 6066, None)
        assert len(caplog.records) == 1 and "LIVEPULSE_WEB_CONFIG_FILE" in caplog.text
        users = web_auth.load(_write(tmp_path, f"basic_auth_users:\n  alice: '{HASH}'\n"))
        web_auth.warn_if_exposed("0.0.0.0", 6066, users)
        assert len(caplog.records) == 2 and "plain http" in caplog.records[1].getMessage()


@pytest.fixture
def tls_pair(tmp_path: Path) -> tuple[Path, Path]:
    return self_signed(tmp_path)
