"""Wire contract v1 (``schemas/*.schema.json``), checked at C speed with msgspec.

The JSON Schemas are the published contract and are generated from this module
(:func:`json_schemas`; ``python -m streams.core.contract`` rewrites them, a test keeps them equal).
The structs below carry the same rules in a form that validates a record in about two
microseconds; ``tests/core/test_contract.py`` checks that both accept and reject the same
records. :func:`decode` is total: whatever bytes arrive, it returns an :class:`Ev` or raises
:class:`InvalidRecord` with a reason, never anything else.

Bounds (every one is in docs/contract.md's table):

* ``ts`` from 0 to :data:`TS_MAX` (9999-12-31T23:59:59.999Z);
* ``watch_ms`` at most :data:`WATCH_MS_MAX`, ``quantity`` 1 to :data:`QUANTITY_MAX`,
  ``amount_cents`` at most :data:`AMOUNT_MAX`: far enough below 2^63 that the sums a room
  keeps (GMV, watch time) stay exact for millions of events at the maximum;
* integers may be written as integral numbers (``1.0``, ``1e3``), as JSON Schema's ``integer``
  allows; ``1.5`` is not an integer;
* ids (``event_id``, ``room_id``, ``user_id``, ``product_id``, ``order_id``) of 1 to
  :data:`ID_MAX_LENGTH` characters, none of them a control character (C0, DEL, C1); a
  ``room_id`` or ``product_id`` must not start with ``__``, which is reserved for what
  LivePulse names itself (``__other__``), and no internal key can equal a room id (they
  all contain a control character);
* ``currency`` an active ISO 4217 code with a minor unit (:mod:`streams.core.currencies`);
* the record at most :data:`MAX_DEPTH` containers deep and UTF-8 throughout, ignored fields
  included.

The character rule is enforced outside msgspec (a regex per id costs ~0.5 µs): JSON can only
carry a control character as an escape, DEL, or the UTF-8 lead byte ``0xC2`` (C1), so ids are
scanned only when the raw record holds a backslash, ``0x7F`` or ``0xC2``.
"""

from __future__ import annotations

import enum
import re
from typing import Annotated, Any, Union

import msgspec
import xxhash

from streams.core.currencies import CURRENCIES
from streams.core.partitioner import partition_of

TS_MAX = 253_402_300_799_999
WATCH_MS_MAX = 7 * 86_400_000
QUANTITY_MAX = 1_000_000
AMOUNT_MAX = 1_000_000_000_000
ID_MAX_LENGTH = 128
MAX_DEPTH = 16
#: Prefix of names LivePulse gives aggregates; no room or product may use it.
RESERVED_PREFIX = "__"
#: The name of an aggregate: rooms beyond the export cap, products beyond a window's cap.
OTHER = f"{RESERVED_PREFIX}other__"

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=ID_MAX_LENGTH)]
CurrencyCode = Annotated[str, msgspec.Meta(min_length=3, max_length=3)]


def _integer(minimum: int, maximum: int) -> Any:
    """An integer field that also takes integral floats (checked in :func:`decode`)."""
    return Union[  # noqa: UP007 - msgspec needs the typing form here
        Annotated[int, msgspec.Meta(ge=minimum, le=maximum)],
        Annotated[float, msgspec.Meta(ge=minimum, le=maximum)],
    ]


EventTime = _integer(0, TS_MAX)
WatchMs = _integer(0, WATCH_MS_MAX)
Quantity = _integer(1, QUANTITY_MAX)
Amount = _integer(0, AMOUNT_MAX)


class Source(enum.IntEnum):
    """The three co-partitioned input topics, in the order settings list them."""

    VIEWS = 0
    CLICKS = 1
    ORDERS = 2


class Kind(enum.IntEnum):
    """Event types, numbered for the compact batch envelope."""

    IMPRESSION = 0
    ENTER = 1
    LEAVE = 2
    PRODUCT_IMPRESSION = 3
    PRODUCT_CLICK = 4
    ORDER_CREATED = 5
    ORDER_PAID = 6
    ORDER_REFUNDED = 7


class _Event(msgspec.Struct, tag_field="type"):
    event_id: Id
    room_id: Id
    user_id: Id
    ts: EventTime


class Impression(_Event, tag="impression"):
    """The room was shown to a user in a feed."""


class Enter(_Event, tag="enter"):
    """The user entered the room: one view."""


class Leave(_Event, tag="leave"):
    """The user left; watch_ms is the time spent."""

    watch_ms: WatchMs


class ProductImpression(_Event, tag="product_impression"):
    """A product card was shown in the room."""

    product_id: Id


class ProductClick(_Event, tag="product_click"):
    """A product card was clicked."""

    product_id: Id


class _Order(_Event):
    order_id: Id
    product_id: Id
    quantity: Quantity
    amount_cents: Amount
    currency: CurrencyCode


class OrderCreated(_Order, tag="created"):
    """An order was placed."""


class OrderPaid(_Order, tag="paid"):
    """The order was paid; counts towards GMV."""


class OrderRefunded(_Order, tag="refunded"):
    """The order was refunded; amount_cents is the refunded amount."""


#: Per source topic: its description and its event types, in schema order.
TOPICS: dict[Source, tuple[str, tuple[type[_Event], ...]]] = {
    Source.VIEWS: ("Room feed impressions, entries and exits.", (Impression, Enter, Leave)),
    Source.CLICKS: (
        "Product cards shown and clicked in a room.",
        (ProductImpression, ProductClick),
    ),
    Source.ORDERS: (
        "Order lifecycle events of a room.",
        (OrderCreated, OrderPaid, OrderRefunded),
    ),
}

KIND_OF: dict[type[_Event], Kind] = {
    Impression: Kind.IMPRESSION,
    Enter: Kind.ENTER,
    Leave: Kind.LEAVE,
    ProductImpression: Kind.PRODUCT_IMPRESSION,
    ProductClick: Kind.PRODUCT_CLICK,
    OrderCreated: Kind.ORDER_CREATED,
    OrderPaid: Kind.ORDER_PAID,
    OrderRefunded: Kind.ORDER_REFUNDED,
}

SOURCE_OF_TYPE: dict[str, Source] = {
    cls.__struct_config__.tag: src  # type: ignore[misc]
    for src, (_, classes) in TOPICS.items()
    for cls in classes
}

_DECODERS = {
    src: msgspec.json.Decoder(Union[classes])  # type: ignore[valid-type]  # noqa: UP007
    for src, (_, classes) in TOPICS.items()
}


class Ev(msgspec.Struct, array_like=True, gc=False, omit_defaults=True):
    """One validated event as the stateful stage needs it: no more than the funnel uses.

    ``user`` is the ``user_id`` of every kind (the people of each funnel stage); ``value`` is
    ``watch_ms`` for leaves and ``amount_cents`` for orders; ``product`` the ``product_id`` of
    every product-bearing kind (the per-product columns). ``eid`` is a 64-bit fingerprint of the
    ``event_id`` (0: none, in hand-made test events), ``oid`` one of the ``order_id`` for
    paid and refunded orders, ``currency`` the order's ISO 4217 numeric code.
    """

    src: int
    offset: int
    ts: int
    room: str
    kind: int
    user: str = ""
    value: int = 0
    product: str = ""
    eid: int = 0
    oid: int = 0
    currency: int = 0


class InvalidRecord(Exception):
    """A record that breaks the contract; ``reason`` (``"<category>: <detail>"``) goes into
    the dead-letter headers.

    ``category`` is one of :data:`CATEGORIES` (the ``reason`` label of
    ``livepulse_events_invalid_total``).
    """

    def __init__(self, category: str, reason: str) -> None:
        super().__init__(reason)
        self.category = category
        self.reason = reason


#: Why a record is dead-lettered: ``json`` (not JSON, or not UTF-8), ``schema`` (breaks the
#: schema or a bound), ``key`` (missing, or not the room_id), ``partition`` (not the partition
#: the default partitioner gives its key), ``clock`` (too far ahead of the wall clock),
#: ``currency`` (not the room's currency; decided by the stateful stage), ``unreadable`` (the
#: Kafka client could not read the record: a corrupt batch, say; the dead letter names its
#: offset), ``internal`` (a LivePulse bug: the record could not be checked; it is kept, and
#: the stream goes on).
CATEGORIES = ("json", "schema", "key", "partition", "clock", "currency", "unreadable", "internal")


_hash = xxhash.xxh3_64_intdigest


def fingerprint(text: str) -> int:
    """The 64-bit fingerprint ids are deduplicated by (never 0, which means "no id")."""
    return _hash(text.encode()) or 1


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
#: Deleted from a record, these bytes leave what the scans below look for: ``{`` and ``[``
#: (depth), a backslash or DEL (control characters) and every non-ASCII byte (UTF-8, C1).
#: One pass instead of five; a typical record leaves just its one ``{``.
_ORDINARY = bytes(b for b in range(128) if b not in b"{[\\\x7f")
_STRING_LITERAL = re.compile(rb'"(?:[^"\\]++|\\.)*+"')
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_INNERMOST = re.compile(rb"\[\]|\{\}")


def _too_deep(value: bytes) -> bool:
    """More than MAX_DEPTH nested containers? (Bounded work; msgspec itself would recurse.)"""
    if value.count(b"{") + value.count(b"[") <= MAX_DEPTH:
        return False
    brackets = _STRING_LITERAL.sub(b"", value).translate(None, _NOT_BRACKET)
    for _ in range(MAX_DEPTH):  # each pass removes the innermost level
        if not brackets:
            return False
        brackets = _INNERMOST.sub(b"", brackets)
    return bool(brackets)


def _whole(value: int | float, name: str) -> int:
    if type(value) is int:
        return value
    if not value.is_integer():  # type: ignore[union-attr]
        raise InvalidRecord("schema", f"schema: Expected an integer, got {value!r} - at `$.{name}`")
    return int(value)


def _text_rules(event: _Event) -> None:
    for name in ("event_id", "room_id", "user_id", "product_id", "order_id"):
        text = getattr(event, name, None)
        if text is not None and _CONTROL.search(text):
            raise InvalidRecord("schema", f"schema: control character in {name} - at `$.{name}`")


#: Struct class -> kind as a plain int (IntEnum comparisons cost more on the hot path).
_KIND = {cls: int(kind) for cls, kind in KIND_OF.items()}
_LEAVE, _CARD, _CREATED, _PAID = (
    int(Kind.LEAVE),
    int(Kind.PRODUCT_IMPRESSION),
    int(Kind.ORDER_CREATED),
    int(Kind.ORDER_PAID),
)


def decode(
    src: Source,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    now_ms: int,
    max_skew_ms: int,
    partition: int | None = None,
    partitions: int = 0,
) -> Ev:
    """Validate one source record and reduce it to an :class:`Ev`, or raise InvalidRecord.

    With ``partitions``, the record's ``partition`` must be the one Kafka's default
    (murmur2) partitioner gives its key among that many partitions. The checks run in the
    order of the categories (schema, then key, partition, clock), as the truth expects.
    """
    try:
        if value is None:
            raise InvalidRecord("schema", "schema: the record has no value")
        # ASCII, one container, no escape, no DEL: none of the scans below can find anything
        plain = value.translate(None, _ORDINARY) == b"{"
        ascii = plain or value.isascii()
        if not ascii:
            try:  # msgspec checks only the strings it keeps; JSON text is UTF-8 throughout
                value.decode()
            except UnicodeDecodeError as exc:
                raise InvalidRecord(
                    "json", f"json: not UTF-8 ({exc.reason} at byte {exc.start})"
                ) from None
        if not plain and value.count(b"{") + value.count(b"[") > MAX_DEPTH and _too_deep(value):
            raise InvalidRecord("schema", f"schema: nested deeper than {MAX_DEPTH} containers")
        try:
            event = _DECODERS[src].decode(value)
        except msgspec.ValidationError as exc:
            raise InvalidRecord("schema", f"schema: {exc}") from None
        except msgspec.DecodeError as exc:
            raise InvalidRecord("json", f"json: invalid JSON: {exc}") from None
        ts = event.ts
        if type(ts) is not int:
            ts = _whole(ts, "ts")
        if not plain and (
            value.find(b"\\") >= 0 or value.find(b"\x7f") >= 0 or (not ascii and b"\xc2" in value)
        ):
            _text_rules(event)
        room = event.room_id
        if room[:2] == RESERVED_PREFIX:
            raise InvalidRecord(
                "schema", f"schema: room_id must not start with {RESERVED_PREFIX!r}"
            )
        kind = _KIND[type(event)]
        product = ""
        currency = amount = 0
        if kind >= _CARD:
            product = event.product_id  # type: ignore[attr-defined]
            if product[:2] == RESERVED_PREFIX:
                raise InvalidRecord(
                    "schema", f"schema: product_id must not start with {RESERVED_PREFIX!r}"
                )
            if kind >= _CREATED:
                known = CURRENCIES.get(event.currency)  # type: ignore[attr-defined]
                if known is None:
                    code = event.currency  # type: ignore[attr-defined]
                    raise InvalidRecord(
                        "schema",
                        f"schema: currency {code!r} is not an ISO 4217 code - at `$.currency`",
                    )
                currency = known[0]
                amount = event.amount_cents  # type: ignore[attr-defined]
                if type(amount) is not int:
                    amount = _whole(amount, "amount_cents")
                if type(event.quantity) is not int:  # type: ignore[attr-defined]
                    _whole(event.quantity, "quantity")  # type: ignore[attr-defined]
        elif kind == _LEAVE:
            amount = event.watch_ms  # type: ignore[attr-defined]
            if type(amount) is not int:
                amount = _whole(amount, "watch_ms")
        if key is None:
            raise InvalidRecord("key", "key: the record has no key (expected the room_id)")
        if key != room.encode():
            raise InvalidRecord("key", f"key: the record key {key[:64]!r} differs from room_id")
        if partitions and partition is not None:
            expected = partition_of(key, partitions)
            if partition != expected:
                raise InvalidRecord(
                    "partition",
                    f"partition: key {key[:64]!r} belongs in partition {expected} by the "
                    f"default (murmur2) partitioner, not {partition}",
                )
        if ts > now_ms + max_skew_ms:
            raise InvalidRecord(
                "clock", f"clock: event time {ts} is {ts - now_ms} ms ahead of the wall clock"
            )
        eid = _hash(event.event_id.encode()) or 1
        if kind >= _PAID:
            oid = _hash(event.order_id.encode()) or 1  # type: ignore[attr-defined]
            return Ev(
                src, offset, ts, room, kind, event.user_id, amount, product, eid, oid, currency
            )
        return Ev(src, offset, ts, room, kind, event.user_id, amount, product, eid, 0, currency)
    except InvalidRecord:
        raise
    except Exception as exc:  # a bug in LivePulse, not a rule: keep the record, keep going
        raise InvalidRecord(
            "internal", f"internal: record could not be checked ({type(exc).__name__}: {exc})"
        ) from None


# -- the published JSON Schemas ------------------------------------------------------------
_SCHEMA_BASE = "https://livepulse.dev/schemas/v1"
# ``(?![\\s\\S])`` is "end of text" in ECMA-262 and in Python alike; ``$`` would also match
# before a final newline in Python's re (which the Python jsonschema package uses)
_ID_PATTERN = "^[^\\u0000-\\u001f\\u007f-\\u009f]*(?![\\s\\S])"
_UNRESERVED_ID_PATTERN = "^(?!__)[^\\u0000-\\u001f\\u007f-\\u009f]*(?![\\s\\S])"
_FIELD_DOCS = {
    "event_id": "Unique id of the event (duplicates are counted once per room window).",
    "room_id": "Live room; also the record key (UTF-8). Must not start with '__'.",
    "user_id": "Pseudonymous user id. Never exported as a label.",
    "ts": f"Event time, milliseconds since the Unix epoch, UTC; 0 to {TS_MAX}.",
    "watch_ms": f"Time spent in the room, ms; at most {WATCH_MS_MAX}.",
    "product_id": "Product of the card or order. Must not start with '__'.",
    "order_id": "Order; a repeated paid or refunded event of one order counts once.",
    "quantity": f"Items in the order; 1 to {QUANTITY_MAX}.",
    "amount_cents": f"Order total in the currency's minor units; at most {AMOUNT_MAX}.",
    "currency": "ISO 4217 code with a minor unit, e.g. CNY; one per room.",
}
_BOUNDS = {
    "ts": (0, TS_MAX),
    "watch_ms": (0, WATCH_MS_MAX),
    "quantity": (1, QUANTITY_MAX),
    "amount_cents": (0, AMOUNT_MAX),
}


def _property(name: str) -> dict:
    doc = {"description": _FIELD_DOCS[name]}
    if name in _BOUNDS:
        low, high = _BOUNDS[name]
        return {"type": "integer", "minimum": low, "maximum": high, **doc}
    if name == "currency":
        return {"$ref": "#/$defs/currency", **doc}
    if name in ("room_id", "product_id"):
        return {"$ref": "#/$defs/unreserved_id", **doc}
    return {"$ref": "#/$defs/id", **doc}


def _value_defs() -> dict:
    text = {"type": "string", "minLength": 1, "maxLength": ID_MAX_LENGTH}
    return {
        "id": {**text, "pattern": _ID_PATTERN},
        "unreserved_id": {**text, "pattern": _UNRESERVED_ID_PATTERN},
        "currency": {"enum": sorted(CURRENCIES)},
    }


def _nesting_defs() -> dict:
    """``nested<n>``: any JSON value at most n containers deep (what ignored fields may hold)."""
    defs: dict = {"nested0": {"type": ["string", "number", "boolean", "null"]}}
    for n in range(1, MAX_DEPTH):
        inner = {"$ref": f"#/$defs/nested{n - 1}"}
        defs[f"nested{n}"] = {
            "anyOf": [
                {"$ref": "#/$defs/nested0"},
                {"type": "array", "items": inner},
                {"type": "object", "additionalProperties": inner},
            ]
        }
    return defs


def json_schemas(topics: dict[Source, str]) -> dict[str, dict]:
    """The JSON Schema of each source topic, keyed by file name (``<topic>.schema.json``)."""
    common = [name for name in _Event.__struct_fields__]
    out = {}
    for src, (about, classes) in TOPICS.items():
        topic = topics[src]
        types = [cls.__struct_config__.tag for cls in classes]
        variants = []
        for cls in classes:
            extra = [f for f in cls.__struct_fields__ if f not in common]
            variants.append(
                {
                    "title": cls.__struct_config__.tag,
                    "description": cls.__doc__,
                    "properties": {
                        "type": {"const": cls.__struct_config__.tag},
                        **{name: _property(name) for name in extra},
                    },
                    "required": extra,
                }
            )
        out[f"{topic}.schema.json"] = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"{_SCHEMA_BASE}/{topic}.schema.json",
            "title": f"{topic} event (contract v1)",
            "description": f"{about} Record key: room_id (UTF-8). Unknown extra fields are "
            f"allowed and ignored; the record may nest at most {MAX_DEPTH} containers deep.",
            "type": "object",
            "properties": {
                **{name: _property(name) for name in common},
                "type": {"enum": types},
            },
            "required": [*common, "type"],
            "additionalProperties": {"$ref": f"#/$defs/nested{MAX_DEPTH - 1}"},
            "oneOf": variants,
            "$defs": {**_value_defs(), **_nesting_defs()},
        }
    return out


if __name__ == "__main__":
    import sys
    from pathlib import Path

    import orjson

    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "schemas")
    names = {Source.VIEWS: "live.views", Source.CLICKS: "live.clicks", Source.ORDERS: "live.orders"}
    for name, schema in json_schemas(names).items():
        (folder / name).write_bytes(orjson.dumps(schema, option=orjson.OPT_INDENT_2) + b"\n")
