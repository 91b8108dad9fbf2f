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
import hashlib
import hmac
import logging
import ssl
from collections import OrderedDict
from collections.abc import Awaitable, Callable
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
#: Compared against when the user is unknown, so a wrong name costs as much as a wrong password.
_DUMMY_HASH = b"$2b$10$" + b"." * 53
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

    def client_context(self) -> ssl.SSLContext | None:
        """TLS for a worker's requests to its peers: the system's CAs plus the certificates
        in ``cert_file`` (peers share the config, so a self-signed certificate or a private
        CA's chain in that file is trusted). Peers must be named in the certificate."""
        if self.cert_file is None:
            return None
        context = ssl.create_default_context()
        context.load_verify_locations(cafile=str(self.cert_file))
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
    users: dict[str, bytes] = {}
    for user, hashed in (raw.get("basic_auth_users") or {}).items():
        if not isinstance(hashed, str) or not _is_bcrypt(hashed):
            raise ValueError(f"{path}: the password of user {str(user)!r} is not a bcrypt hash")
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


def _is_bcrypt(hashed: str) -> bool:
    return len(hashed) == 60 and hashed[:4] in ("$2a$", "$2b$", "$2y$") and hashed[6] == "$"


class BasicAuth:
    """Checks ``Authorization: Basic`` headers against bcrypt hashes, off the event loop.

    bcrypt is slow on purpose; a scrape or a page poll every second must not pay it each
    time, so the outcome of each (user, password) pair is kept (as a keyed digest, never the
    password) for the users' hashes as loaded.
    """

    def __init__(self, users: dict[str, bytes], remember: int = 256) -> None:
        self.users = users
        self._remember = remember
        self._seen: OrderedDict[bytes, bool] = OrderedDict()
        self._key = hashlib.sha256(b"".join(sorted(users.values()))).digest()

    async def allows(self, header: str | None) -> bool:
        credentials = _basic(header)
        if credentials is None:
            return False
        user, password = credentials
        digest = hmac.new(self._key, f"{user}\0{password}".encode(), "sha256").digest()
        known = self._seen.get(digest)
        if known is not None:
            self._seen.move_to_end(digest)
            return known
        hashed = self.users.get(user, _DUMMY_HASH)
        ok = await asyncio.to_thread(_checkpw, password.encode(), hashed)
        ok = ok and user in self.users
        self._seen[digest] = ok
        while len(self._seen) > self._remember:
            self._seen.popitem(last=False)
        return ok


def _checkpw(password: bytes, hashed: bytes) -> bool:
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
    name a configured user (every path but :data:`OPEN_PATHS`)."""
    from aiohttp import web

    auth = BasicAuth(config.users)

    @web.middleware
    async def require_credentials(request: web.Request, handler: Handler) -> Any:
        if request.path in OPEN_PATHS or await auth.allows(request.headers.get("Authorization")):
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
