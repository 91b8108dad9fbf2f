"""Distinct people per funnel stage: mergeable HLL sketches of ``user_id`` (Apache DataSketches).

A window keeps one sketch per stage of :data:`streams.core.funnel.PEOPLE_FIELDS`, created at
the stage's second person: until then the stage holds its one user id, which costs a fraction
of an empty sketch's memory (most rooms have few people at some stages). An open window holds
live sketches; a closed one keeps their compact serialized form (a few bytes per person while the
sketch is in its exact list/set mode, ~8 KB at most in HLL mode; a stage of one person keeps
its user id, in memory and in the changelog) for as long as the rolling
blocks may merge it, and the estimates as plain ints for good. A room's session people (the
closed windows' union) are kept as HLL_8, ~16 KB at most, where HLL_4 would be unpacked and
packed again at each merge; the windows closed since the last changelog write are merged into
it at the next one, all at once.
"""

from __future__ import annotations

from collections.abc import Iterable

from datasketches import hll_sketch, hll_union, tgt_hll_type

#: HLL with 2^14 buckets: relative standard error 0.8 %, so "within 2 %" holds at 2.5 sigma.
#: Below a few thousand distinct people the sketch is in its exact list/set mode.
HLL_LG_K = 14

#: An open window's stage: nobody yet, its one person's user id, or a live sketch.
Live = hll_sketch | str | None
#: A stage's people: live (open window), packed (closed window: compact bytes, or the one
#: person's user id), or none.
Part = hll_sketch | bytes | str | None


def new() -> hll_sketch:
    return hll_sketch(HLL_LG_K, tgt_hll_type.HLL_4)


def grown(first: str, second: str) -> hll_sketch:
    """The sketch of a stage that had one person and now has another."""
    sketch = new()
    sketch.update(first)
    sketch.update(second)
    return sketch


def estimate(part: Live) -> int:
    if part is None:
        return 0
    if isinstance(part, str):
        return 1
    return round(part.get_estimate())


def pack(part: Live) -> bytes | str | None:
    """The most compact form of the stage's people: nobody (None), the one person's user id
    as is (a sketch of one costs an allocation and a serialization at every close and every
    changelog write of a small room), or the sketch serialized compact."""
    if part is None or part.__class__ is str:
        return part  # type: ignore[return-value]
    return part.serialize_compact()  # type: ignore[union-attr]


def unpack(data: bytes | str | None) -> Live:
    """An open window's stage from :func:`pack`'s form."""
    if data is None or isinstance(data, str):
        return data
    return hll_sketch.deserialize(data)


def _live(part: Part) -> hll_sketch | None:
    if isinstance(part, bytes):
        return hll_sketch.deserialize(part)
    if isinstance(part, str):
        sketch = new()
        sketch.update(part)
        return sketch
    return part


def union(parts: Iterable[Part]) -> hll_sketch | None:
    """The union of the parts (None when there is none); a single part is returned as is.

    Single user ids are added to a copy of the one sketch there is, if there is at most one
    (the common case of a small room): cheaper than a union, the same sketch. A union of
    several sketches comes out as HLL_8: the same registers and estimate as HLL_4, but
    HLL_4's packing costs hundreds of microseconds per sketch in HLL mode each way (into a
    union and out of it), and this result is usually merged again (a session's people).
    """
    merged = _merge(parts)
    if merged is None or isinstance(merged, hll_sketch):
        return merged
    return merged.get_result(tgt_hll_type.HLL_8)


def union_estimate(parts: Iterable[Part]) -> int:
    """The estimate of :func:`union` (without building its result)."""
    merged = _merge(parts)
    if merged is None:
        return 0
    return round(merged.get_estimate())


def _merge(parts: Iterable[Part]) -> hll_sketch | hll_union | None:
    """The parts' union: a sketch when at most one part is a sketch, else a union."""
    present = [p for p in parts if p is not None]
    if not present:
        return None
    if len(present) == 1:
        return _live(present[0])
    sketches = [p for p in present if not isinstance(p, str)]
    if len(sketches) <= 1:
        only = sketches[0] if sketches else None
        if only is None:
            base = new()
        elif isinstance(only, bytes):
            base = hll_sketch.deserialize(only)
        else:  # a live sketch: the caller's, left as it is
            base = hll_sketch.deserialize(only.serialize_updatable())
        for part in present:
            if isinstance(part, str):
                base.update(part)
        return base
    merged = hll_union(HLL_LG_K)
    for part in present:
        merged.update(part if isinstance(part, str) else _live(part))
    return merged
