"""Wire contract v1 (``schemas/*.schema.json``), decoded at C speed with msgspec.

The JSON Schemas are the published contract; these structs are the same rules in a form
that validates a record in about a microsecond. ``tests/unit/test_contract.py`` checks that
both accept and reject the same records.
"""

from __future__ import annotations

import enum
from typing import Annotated, Union

import msgspec

NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]
EventTime = Annotated[int, msgspec.Meta(ge=0)]
NonNegative = Annotated[int, msgspec.Meta(ge=0)]
Positive = Annotated[int, msgspec.Meta(ge=1)]
Currency = Annotated[str, msgspec.Meta(pattern="^[A-Z]{3}$")]


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
    event_id: NonEmpty
    room_id: NonEmpty
    user_id: NonEmpty
    ts: EventTime


class Impression(_Event, tag="impression"):
    pass


class Enter(_Event, tag="enter"):
    pass


class Leave(_Event, tag="leave"):
    watch_ms: NonNegative


class ProductImpression(_Event, tag="product_impression"):
    product_id: NonEmpty


class ProductClick(_Event, tag="product_click"):
    product_id: NonEmpty


class _Order(_Event):
    order_id: NonEmpty
    product_id: NonEmpty
    quantity: Positive
    amount_cents: NonNegative
    currency: Currency


class OrderCreated(_Order, tag="created"):
    pass


class OrderPaid(_Order, tag="paid"):
    pass


class OrderRefunded(_Order, tag="refunded"):
    pass


KIND_OF = {
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
    "impression": Source.VIEWS,
    "enter": Source.VIEWS,
    "leave": Source.VIEWS,
    "product_impression": Source.CLICKS,
    "product_click": Source.CLICKS,
    "created": Source.ORDERS,
    "paid": Source.ORDERS,
    "refunded": Source.ORDERS,
}

_DECODERS = {
    Source.VIEWS: msgspec.json.Decoder(Union[Impression, Enter, Leave]),  # noqa: UP007
    Source.CLICKS: msgspec.json.Decoder(Union[ProductImpression, ProductClick]),  # noqa: UP007
    Source.ORDERS: msgspec.json.Decoder(
        Union[OrderCreated, OrderPaid, OrderRefunded]  # noqa: UP007
    ),
}


class Ev(msgspec.Struct, array_like=True, gc=False, omit_defaults=True):
    """One validated event as the stateful stage needs it: no more than the funnel uses.

    ``user`` is kept only for enters (unique viewers); ``value`` is ``watch_ms`` for leaves
    and ``amount_cents`` for orders; ``product`` only for product clicks and orders created
    (the detector's per-product stock-out test).
    """

    src: int
    offset: int
    ts: int
    room: str
    kind: int
    user: str = ""
    value: int = 0
    product: str = ""


class InvalidRecord(Exception):
    """A record that breaks the contract; ``reason`` goes into the dead-letter headers."""

    def __init__(self, category: str, reason: str) -> None:
        super().__init__(reason)
        self.category = category
        self.reason = reason


def decode(
    src: Source, offset: int, key: bytes | None, value: bytes | None, now_ms: int, max_skew_ms: int
) -> Ev:
    """Validate one source record and reduce it to an :class:`Ev`, or raise InvalidRecord."""
    if value is None:
        raise InvalidRecord("schema", "record has no value")
    try:
        event = _DECODERS[src].decode(value)
    except msgspec.ValidationError as exc:
        raise InvalidRecord("schema", f"schema: {exc}") from None
    except msgspec.DecodeError as exc:
        raise InvalidRecord("json", f"invalid JSON: {exc}") from None
    if key is None:
        raise InvalidRecord("key", "record has no key (expected the room_id)")
    if key != event.room_id.encode():
        raise InvalidRecord("key", f"record key {key[:64]!r} differs from room_id")
    if event.ts > now_ms + max_skew_ms:
        raise InvalidRecord(
            "clock", f"event time {event.ts} is {event.ts - now_ms} ms ahead of the wall clock"
        )
    kind = KIND_OF[type(event)]
    if kind is Kind.ENTER:
        return Ev(src, offset, event.ts, event.room_id, kind, event.user_id)
    if kind is Kind.LEAVE:
        return Ev(src, offset, event.ts, event.room_id, kind, "", event.watch_ms)
    if kind >= Kind.ORDER_CREATED:
        product = event.product_id if kind is Kind.ORDER_CREATED else ""
        return Ev(src, offset, event.ts, event.room_id, kind, "", event.amount_cents, product)
    if kind is Kind.PRODUCT_CLICK:
        return Ev(src, offset, event.ts, event.room_id, kind, "", 0, event.product_id)
    return Ev(src, offset, event.ts, event.room_id, kind)
