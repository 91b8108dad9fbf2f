"""The batch envelope between the ingest stage and the stateful stage.

Faust pays ~200 µs per Kafka message, so the stateful agent must see many events per message:
the ingest stage validates single-event records and writes them, in log order per source
topic-partition, as one envelope per partition of ``livepulse.batches``. An envelope with no
events is a tick: it lets the idle-partition rule run when nothing arrives.
"""

from __future__ import annotations

import msgspec

from streams.contract import Ev


class Envelope(msgspec.Struct, array_like=True, gc=False):
    partition: int
    sent_ms: int
    events: list[Ev]


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Envelope)


def encode(envelope: Envelope) -> bytes:
    return _encoder.encode(envelope)


def decode(data: bytes) -> Envelope:
    return _decoder.decode(data)
