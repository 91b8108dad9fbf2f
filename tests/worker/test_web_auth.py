"""The web config file: what it accepts, what it refuses (one line), and the password check."""

from __future__ import annotations

import asyncio
import base64
import logging
import threading
from pathlib import Path

import bcrypt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from streams.commands.demo import screen_url
from streams.settings import Settings
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
    assert config.server_context() is not None and config.client_context is not None
    assert HASH not in repr(config)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("basic_auth_users: [", "is not YAML"),
        ("- a\n- b\n", "expected a mapping"),
        ("basic_auth_user:\n  a: b\n", "unknown keys ['basic_auth_user']"),
        ("basic_auth_users:\n  alice: plain-password\n", "user 'alice' is not a bcrypt hash"),
        ("basic_auth_users: [alice]\n", "basic_auth_users maps each user"),
        ("basic_auth_users: alice\n", "basic_auth_users maps each user"),
        ("basic_auth_users:\n  alice: 12\n", "user 'alice' is not a bcrypt hash"),
        (f"basic_auth_users:\n  alice: '$2b$xx${'.' * 53}'\n", "is not a bcrypt hash"),
        (f"basic_auth_users:\n  alice: '$2b$12${'!' * 53}'\n", "is not a bcrypt hash"),
        (f"basic_auth_users:\n  alice: '$2b$03${'.' * 53}'\n", "cost of user 'alice' is 3"),
        (f"basic_auth_users:\n  alice: '$2b$17${'.' * 53}'\n", "cost of user 'alice' is 17"),
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


def test_basic_auth_checks_user_and_password(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bytes] = []
    monkeypatch.setattr(
        web_auth, "checkpw", lambda pw, hashed: calls.append(pw) or bcrypt.checkpw(pw, hashed)
    )
    auth = web_auth.BasicAuth({"alice": HASH.encode()})

    async def check() -> list[bool]:
        return [
            await auth.allows(h)
            for h in (
                _basic("alice", "s3cret"),
                _basic("alice", "s3cret"),  # remembered: no second bcrypt
                _basic("alice", "wrong"),
                _basic("alice", "wrong"),  # failures are checked again
                _basic("bob", "s3cret"),
                None,
                "Bearer x",
                "Basic !!!",
                "Basic " + base64.b64encode(b"no-colon").decode(),
            )
        ]

    assert asyncio.run(check()) == [True, True, False, False, False, False, False, False, False]
    assert calls == [b"s3cret", b"wrong", b"wrong", b"s3cret"]


def test_wrong_passwords_do_not_push_out_a_user_who_passed(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bytes] = []
    monkeypatch.setattr(
        web_auth, "checkpw", lambda pw, hashed: calls.append(pw) or bcrypt.checkpw(pw, hashed)
    )
    auth = web_auth.BasicAuth({"alice": HASH.encode()}, remember=2)

    async def check() -> bool:
        assert await auth.allows(_basic("alice", "s3cret"))
        for i in range(5):
            assert not await auth.allows(_basic("alice", f"guess{i}"))
        return await auth.allows(_basic("alice", "s3cret"))

    assert asyncio.run(check()) and calls.count(b"s3cret") == 1


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


class SlowChecker:
    """Stands in for bcrypt: records each call and its thread, and holds every call until
    released, so concurrent requests can be observed while checks wait."""

    def __init__(self) -> None:
        self.calls: list[tuple[bytes, str]] = []
        self.release = threading.Event()

    def __call__(self, password: bytes, hashed: bytes) -> bool:
        self.calls.append((password, threading.current_thread().name))
        self.release.wait(10)
        return bcrypt.checkpw(password, hashed)


@pytest.fixture
def slow(monkeypatch: pytest.MonkeyPatch) -> SlowChecker:
    checker = SlowChecker()
    monkeypatch.setattr(web_auth, "checkpw", checker)
    return checker


def test_checks_run_on_their_own_thread_and_concurrent_equal_pairs_share_one(
    slow: SlowChecker,
) -> None:
    auth = web_auth.BasicAuth({"alice": HASH.encode()})

    async def check() -> list[bool]:
        asked = [asyncio.ensure_future(auth.allows(_basic("alice", "s3cret"))) for _ in range(5)]
        while not slow.calls:
            await asyncio.sleep(0.01)
        slow.release.set()
        return await asyncio.gather(*asked)

    assert asyncio.run(check()) == [True] * 5
    assert [name.startswith("livepulse-bcrypt") for _, name in slow.calls] == [True]


def test_unauthenticated_floods_get_503_with_retry_after(slow: SlowChecker) -> None:
    config = web_auth.WebConfig(Path("web.yml"), users={"alice": HASH.encode()})

    async def flood() -> tuple[list[int], set[str | None], int]:
        app = web.Application(middlewares=[web_auth.middleware(config)])
        app.router.add_get("/metrics", _ok)
        async with TestClient(TestServer(app)) as client:
            asked = [
                asyncio.ensure_future(
                    client.get("/metrics", headers={"Authorization": _basic("alice", f"w{i}")})
                )
                for i in range(20)
            ]
            while sum(a.done() for a in asked) < 12:  # all but the 8 that may wait
                await asyncio.sleep(0.01)
            first = [a for a in asked if a.done()]
            refused = [await a for a in first]
            slow.release.set()
            answered = [(await a).status for a in asked if a not in first]
            good = await client.get(
                "/metrics", headers={"Authorization": _basic("alice", "s3cret")}
            )
            retry = {r.headers.get("Retry-After") for r in refused}
            return [r.status for r in refused] + answered, retry, good.status

    statuses, retry, good = asyncio.run(flood())
    assert statuses == [503] * 12 + [401] * 8 and retry == {"1"} and good == 200
    assert len(slow.calls) == 9


async def _ok(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def test_an_unknown_user_is_checked_at_the_highest_cost_of_the_users(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hashes: list[bytes] = []
    monkeypatch.setattr(web_auth, "checkpw", lambda pw, hashed: hashes.append(hashed) or False)
    costly = "$2b$13$" + "." * 53
    auth = web_auth.BasicAuth({"alice": HASH.encode(), "bob": costly.encode()})
    assert not asyncio.run(auth.allows(_basic("mallory", "guess")))
    assert hashes[0][:7] == b"$2b$13$" and web_auth._bcrypt_cost(hashes[0].decode()) == 13


def test_the_web_config_is_parsed_once_per_settings(
    tmp_path: Path, tls_pair: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = tls_pair
    path = _write(
        tmp_path, f"tls_server_config:\n  cert_file: {cert.name}\n  key_file: {key.name}\n"
    )
    loads: list[Path] = []
    real = web_auth.load
    monkeypatch.setattr(web_auth, "load", lambda p: loads.append(p) or real(p))
    settings = Settings(web_config_file=path)
    assert screen_url(settings).startswith("https://")
    config = settings.web_config
    assert config is not None and config is settings.web_config
    assert config.client_context is config.client_context
    assert loads == [path]


def test_users_accepting_the_committed_example_password_are_warned_about(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    committed = Path(__file__).parents[2] / "deploy" / "prometheus" / "livepulse.password"
    assert committed.read_text().strip() == web_auth.EXAMPLE_PASSWORD
    example = bcrypt.hashpw(web_auth.EXAMPLE_PASSWORD.encode(), bcrypt.gensalt(4)).decode()
    text = f"basic_auth_users:\n  alice: '{HASH}'\n  prometheus: '{example}'\n"
    with caplog.at_level(logging.WARNING, logger=web_auth.__name__):
        web_auth.warn_if_example_password(web_auth.load(_write(tmp_path, text)))
        web_auth.warn_if_example_password(
            web_auth.load(_write(tmp_path, f"basic_auth_users:\n  alice: '{HASH}'\n"))
        )
    assert len(caplog.records) == 1 and "users prometheus in" in caplog.text
