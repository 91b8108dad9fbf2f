"""The session recorded in tests/data (``session.jsonl`` and ``session.truth.json``), rebuilt
from its configuration, so a change of the truth's definitions regenerates its truth::

    .venv/bin/python -m tests.support.recorded_session     # rewrites both files

``tests/sim/test_recorded_session.py`` fails when the committed files differ from this.
(Duplicates and repeated payments were added to the model after the recording; they are
off here so the records stay those that were recorded.)
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import orjson

from streams.settings import Settings
from streams.sim import SimConfig, compute_truth, generate
from streams.sim.publish import Placement, write_file

DATA = Path(__file__).parents[1] / "data"
RECORDS = DATA / "session.jsonl"
TRUTH = DATA / "session.truth.json"

CONFIG = SimConfig(
    seed=7,
    rooms=4,
    minutes=8.0,
    rate=12.0,
    end_ms=1_795_641_201_056,
    out_of_order_share=0.02,
    late_share=0.01,
    malformed_share=0.005,
    duplicate_share=0.0,
    repeated_payment_share=0.0,
    incidents=("payment_outage",),
    grace_ms=5000,
    window_ms=60000,
    partitions=4,
)


def build() -> tuple[bytes, bytes]:
    """``(records, truth)``: the recording ``livepulse simulate --out`` writes, and its truth."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "session.jsonl"
        write_file(CONFIG, Placement(CONFIG.end_ms or 0, None), Settings(), out)
        records = out.read_bytes()
    truth = compute_truth(CONFIG, generate(CONFIG))
    return records, orjson.dumps(truth, option=orjson.OPT_INDENT_2) + b"\n"


def main() -> None:
    records, truth = build()
    RECORDS.write_bytes(records)
    TRUTH.write_bytes(truth)
    print(f"wrote {RECORDS} and {TRUTH}")


if __name__ == "__main__":
    main()
