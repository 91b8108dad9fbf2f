"""Distinct people per stage: single ids, live and compact sketches, merged."""

from __future__ import annotations

from streams.core import people


def _sketch(*users: str) -> people.hll_sketch:
    sketch = people.new()
    for user in users:
        sketch.update(user)
    return sketch


def test_every_mix_of_ids_and_sketches_merges_to_the_distinct_count() -> None:
    live = _sketch("a", "b")
    packed = _sketch("b", "c", "d").serialize_compact()
    cases = [
        ([], 0),
        ([None, None], 0),
        (["a"], 1),
        (["a", "a", "b"], 2),
        ([live], 2),
        ([live, "a", "z"], 3),
        ([packed, "a"], 4),
        ([live, packed], 4),
        ([live, packed, "e", None], 5),
    ]
    for parts, distinct in cases:
        assert people.union_estimate(parts) == distinct, parts
    assert people.estimate(live) == 2  # merging never changes a live sketch


def test_a_packed_single_id_is_the_sketch_of_that_id() -> None:
    assert people.pack(None) is None
    assert people.estimate(people.unpack(people.pack("u"))) == 1
    grown = people.grown("u", "v")
    assert people.estimate(grown) == 2 and people.union_estimate([grown, "u"]) == 2
