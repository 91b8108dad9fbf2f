"""TLS and SASL for managed Kafka clusters: settings -> aiokafka options and Faust credentials.

Every Kafka client of LivePulse (the Faust app, the ingest stage, produce/replay/record,
simulate, topic creation) gets its security from here, so one set of ``LIVEPULSE_`` variables
secures them all. Passwords stay :class:`pydantic.SecretStr` until the client is built: they
never reach a log line, a repr, or ``/metrics``.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Any

from streams.settings import Settings

if TYPE_CHECKING:
    from faust.types.auth import CredentialsT


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context for SSL and SASL_SSL; None for plaintext protocols."""
    if settings.security_protocol not in ("SSL", "SASL_SSL"):
        return None
    context = ssl.create_default_context(
        cafile=str(settings.ssl_cafile) if settings.ssl_cafile else None
    )
    context.check_hostname = settings.ssl_check_hostname
    if settings.ssl_certfile is not None:
        password = settings.ssl_key_password
        context.load_cert_chain(
            str(settings.ssl_certfile),
            str(settings.ssl_keyfile) if settings.ssl_keyfile else None,
            password.get_secret_value() if password else None,
        )
    return context


def client_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for AIOKafkaConsumer, AIOKafkaProducer and AIOKafkaAdminClient."""
    options: dict[str, Any] = {"security_protocol": settings.security_protocol}
    context = ssl_context(settings)
    if context is not None:
        options["ssl_context"] = context
    if settings.security_protocol.startswith("SASL_"):
        assert settings.sasl_username is not None and settings.sasl_password is not None
        options.update(
            sasl_mechanism=settings.sasl_mechanism,
            sasl_plain_username=settings.sasl_username,
            sasl_plain_password=settings.sasl_password.get_secret_value(),
        )
    return options


def faust_credentials(settings: Settings) -> CredentialsT | None:
    """The same security as Faust's ``broker_credentials``."""
    import faust  # only the worker needs it; the other commands stay light
    from faust.types.auth import SASLMechanism

    protocol = settings.security_protocol
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return faust.SSLCredentials(ssl_context(settings))
    assert settings.sasl_username is not None and settings.sasl_password is not None
    return faust.SASLCredentials(
        username=settings.sasl_username,
        password=settings.sasl_password.get_secret_value(),
        ssl_context=ssl_context(settings),
        mechanism=SASLMechanism(settings.sasl_mechanism),
    )
