"""The batch envelope between the ingest stage and the stateful stage.

Faust pays ~200 µs per Kafka message, so the stateful agent must see many events per message:
the ingest stage validates single-event records and writes them, in log order per source
topic-partition, as envelopes on the same partition of ``livepulse.batches``. An envelope
carries the ingest stage's wall clock when it read the records (``read_ms``: the cap of the
partition's frontiers) and its idle verdict per source (``idle``, bit s for source s), so the
stateful stage decides nothing by its own clock. An envelope with no events is a tick: it
lets the idle rule act when nothing arrives. Envelopes stay below a byte limit
(:func:`encode_bounded`), which keeps them under a broker's record size limit.
"""

from __future__ import annotations

from collections.abc import Iterator

import msgspec

from streams.core.contract import Ev


class Envelope(msgspec.Struct, array_like=True, gc=False):
    read_ms: int
    idle: int
    events: list[Ev]


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Envelope)


def encode(envelope: Envelope) -> bytes:
    return _encoder.encode(envelope)


def decode(data: bytes) -> Envelope:
    return _decoder.decode(data)


def encode_bounded(read_ms: int, idle: int, events: list[Ev], max_bytes: int) -> Iterator[bytes]:
    """The events as envelopes of at most ``max_bytes`` each, in order (halving until they fit;
    one event always fits: its strings are bounded by the contract)."""
    data = _encoder.encode(Envelope(read_ms, idle, events))
    if len(data) <= max_bytes or len(events) <= 1:
        yield data
        return
    half = len(events) // 2
    yield from encode_bounded(read_ms, idle, events[:half], max_bytes)
    yield from encode_bounded(read_ms, idle, events[half:], max_bytes)
