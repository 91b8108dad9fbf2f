"""Who may look at the worker's pages: TLS and basic auth from a Prometheus-style web config.

The file has the shape of the Prometheus exporter toolkit's ``--web.config.file``, so the
people who run exporters already know it (``LIVEPULSE_WEB_CONFIG_FILE``)::

    tls_server_config:          # optional: serve https
      cert_file: server.pem     # relative paths are relative to this file
      key_file: server.key
    basic_auth_users:           # optional: every page asks for one of these users
      prometheus: $2b$12$...    # bcrypt hash (htpasswd -nBC 12 "" | tr -d ':\\n')

Without the setting nothing changes: plain http, no credentials. ``/health`` and ``/ready``
stay open either way, for orchestrators' probes (they carry no room data). A bad file is
refused by the settings with one line naming what is wrong.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import hmac
import logging
import os
import re
import ssl
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import yaml

log = logging.getLogger(__name__)

#: Pages an orchestrator probes; served without credentials.
OPEN_PATHS = frozenset({"/health", "/ready"})
#: The realm browsers show in their password prompt.
REALM = "LivePulse"
_TLS_KEYS = {"cert_file", "key_file"}
_TOP_KEYS = {"tls_server_config", "basic_auth_users"}
#: A bcrypt hash as htpasswd and bcrypt write it: variant, two-digit cost, salt and digest.
_BCRYPT = re.compile(r"\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}")
#: Costs accepted: below 4 bcrypt refuses; above 16 one check takes seconds (a request each).
MIN_COST, MAX_COST = 4, 16
#: The example password committed in deploy/prometheus/livepulse.password for the local
#: compose stack (a test keeps the two equal): a worker whose users accept it says so at start.
EXAMPLE_PASSWORD = "Nn2Wmj_w8BVB2pX9XCDEipth"
#: Bind addresses that reach this machine only; any other without a web config is warned about.
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


@dataclass(frozen=True)
class WebConfig:
    """A parsed web config file: TLS certificate and key, and bcrypt hashes by user."""

    path: Path
    cert_file: Path | None = None
    key_file: Path | None = None
    users: dict[str, bytes] = field(default_factory=dict, repr=False)

    @property
    def tls(self) -> bool:
        return self.cert_file is not None

    def server_context(self) -> ssl.SSLContext | None:
        """The TLS context the web server listens with (None: plain http)."""
        if self.cert_file is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(str(self.cert_file), str(self.key_file))
        return context

    @functools.cached_property
    def client_context(self) -> ssl.SSLContext | None:
        """TLS for a worker's requests to its peers, trusting the certificates in
        ``cert_file`` only (the peers share the config: a self-signed certificate, or a chain
        ending in a private CA): not the system's CAs, so a group member with any public
        certificate cannot pass for a peer and receive the browser's credentials. Peers must
        be named in the certificate. Made once (a property: every forward reuses it)."""
        if self.cert_file is None:
            return None
        context = ssl.create_default_context(cafile=str(self.cert_file))
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context


def load(path: Path) -> WebConfig:
    """Parse and check ``path``; ValueError with one readable sentence when it is unusable."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise ValueError(f"{path} is not YAML{line}") from None
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping with {sorted(_TOP_KEYS)}")
    unknown = set(raw) - _TOP_KEYS
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(map(str, unknown))}")
    cert = key = None
    tls = raw.get("tls_server_config")
    if tls is not None:
        if not isinstance(tls, dict) or set(tls) - _TLS_KEYS or not tls:
            raise ValueError(f"{path}: tls_server_config takes cert_file and key_file only")
        if not tls.get("cert_file") or not tls.get("key_file"):
            raise ValueError(f"{path}: tls_server_config needs both cert_file and key_file")
        cert, key = (_relative(path, str(tls[k])) for k in ("cert_file", "key_file"))
    listed = raw.get("basic_auth_users") or {}
    if not isinstance(listed, dict):
        raise ValueError(f"{path}: basic_auth_users maps each user to a bcrypt hash")
    users: dict[str, bytes] = {}
    for user, hashed in listed.items():
        cost = _bcrypt_cost(hashed)
        if cost is None:
            raise ValueError(f"{path}: the password of user {str(user)!r} is not a bcrypt hash")
        if not MIN_COST <= cost <= MAX_COST:
            raise ValueError(
                f"{path}: the bcrypt cost of user {str(user)!r} is {cost}; "
                f"use {MIN_COST} to {MAX_COST}"
            )
        users[str(user)] = hashed.encode()
    config = WebConfig(path, cert, key, users)
    try:
        config.server_context()
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"{path}: cannot use {cert} with {key}: {exc}") from None
    return config


def _relative(config: Path, name: str) -> Path:
    file = Path(name)
    return file if file.is_absolute() else config.parent / file


def _bcrypt_cost(hashed: object) -> int | None:
    """The cost of a bcrypt hash, or None when ``hashed`` is not one."""
    match = _BCRYPT.fullmatch(hashed) if isinstance(hashed, str) else None
    return None if match is None else int(match.group(1))


class Busy(Exception):
    """Too many password checks are waiting: the request is answered 503 with Retry-After."""


class BasicAuth:
    """Checks ``Authorization: Basic`` headers against bcrypt hashes, off the event loop.

    bcrypt is slow on purpose, so unauthenticated requests must not be able to occupy the
    worker with it: checks run one at a time on a thread of their own (not the loop's shared
    pool, which aiokafka's look-ups and the forwards use), at most ``waiting`` distinct checks
    wait for it (more: :class:`Busy`), and concurrent requests with the same (user, password)
    share one check. A scrape or a page poll every second must not pay bcrypt each time, so
    the pairs that passed are remembered (a digest keyed with a random per-process key, never
    the password); failures are not, so wrong guesses cannot evict real users.
    """

    def __init__(self, users: dict[str, bytes], remember: int = 256, waiting: int = 8) -> None:
        self.users = users
        self._remember = remember
        self._waiting = waiting
        #: pairs that passed, by a digest keyed per process (not derived from the hashes)
        self._passed: OrderedDict[bytes, None] = OrderedDict()
        self._key = os.urandom(32)
        self._checks: dict[bytes, asyncio.Future[bool]] = {}
        self._executor: ThreadPoolExecutor | None = None
        #: compared against when the user is unknown, at the users' highest cost, so a wrong
        #: name takes as long as the slowest user's wrong password (no user names by timing)
        cost = max((_bcrypt_cost(h.decode()) or MIN_COST for h in users.values()), default=12)
        self._unknown = bcrypt.gensalt(cost) + b"." * 31

    async def allows(self, header: str | None) -> bool:
        """Whether the header names a configured user with its password; :class:`Busy` when
        the check would have to wait behind too many others."""
        credentials = _basic(header)
        if credentials is None:
            return False
        user, password = credentials
        digest = hmac.new(self._key, f"{user}\0{password}".encode(), "sha256").digest()
        if digest in self._passed:
            self._passed.move_to_end(digest)
            return True
        check = self._checks.get(digest)
        if check is None:
            if len(self._checks) >= self._waiting:
                raise Busy
            check = asyncio.ensure_future(self._check(user, password, digest))
            self._checks[digest] = check
            check.add_done_callback(lambda _: self._checks.pop(digest, None))
        return await asyncio.shield(check)

    async def _check(self, user: str, password: str, digest: bytes) -> bool:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="livepulse-bcrypt")
        hashed = self.users.get(user, self._unknown)
        loop = asyncio.get_running_loop()
        ok = await loop.run_in_executor(self._executor, checkpw, password.encode(), hashed)
        ok = ok and user in self.users
        if ok:  # failures are not kept: wrong guesses must not push real users out
            self._passed[digest] = None
            while len(self._passed) > self._remember:
                self._passed.popitem(last=False)
        return ok


def checkpw(password: bytes, hashed: bytes) -> bool:
    """bcrypt's check; False for a hash bcrypt cannot read (the one place it is called)."""
    try:
        return bcrypt.checkpw(password, hashed)
    except ValueError:
        return False


def _basic(header: str | None) -> tuple[str, str] | None:
    if not header or header[:6].lower() != "basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


Handler = Callable[[Any], Awaitable[Any]]


def middleware(config: WebConfig) -> Callable[[Any, Handler], Awaitable[Any]]:
    """An aiohttp middleware: 401 with a Basic challenge unless the request's credentials
    name a configured user (every path but :data:`OPEN_PATHS`); 503 with ``Retry-After`` while
    too many password checks wait."""
    from aiohttp import web

    auth = BasicAuth(config.users)

    @web.middleware
    async def require_credentials(request: web.Request, handler: Handler) -> Any:
        if request.path in OPEN_PATHS:
            return await handler(request)
        try:
            allowed = await auth.allows(request.headers.get("Authorization"))
        except Busy:
            return web.json_response(
                {"error": "too many password checks waiting; retry"},
                status=503,
                headers={"Retry-After": "1"},
            )
        if allowed:
            return await handler(request)
        return web.json_response(
            {"error": "credentials required"},
            status=401,
            headers={"WWW-Authenticate": f'Basic realm="{REALM}", charset="UTF-8"'},
        )

    return require_credentials


def warn_if_exposed(bind: str, port: int, config: WebConfig | None) -> None:
    """One warning line when the pages (GMV per room) are reachable from other machines
    without TLS or credentials."""
    if bind in LOOPBACK:
        return
    if config is None or not config.users:
        log.warning(
            "web pages on %s:%d are open to anyone who can reach this address (GMV per room); "
            "set LIVEPULSE_WEB_CONFIG_FILE for basic auth and TLS (docs/security.md)",
            bind or "0.0.0.0",
            port,
        )
    elif not config.tls:
        log.warning(
            "web pages on %s:%d take passwords over plain http; add tls_server_config to %s",
            bind,
            port,
            config.path,
        )


def warn_if_example_password(config: WebConfig) -> None:
    """One warning line when a user's hash accepts the committed example password: anyone
    who read the repository can log in (one bcrypt check per user, once, at start)."""
    users = [u for u, hashed in config.users.items() if checkpw(EXAMPLE_PASSWORD.encode(), hashed)]
    if users:
        log.warning(
            "web users %s in %s accept the example password committed in "
            "deploy/prometheus/livepulse.password; make a new one (docs/security.md)",
            ", ".join(users),
            config.path,
        )
