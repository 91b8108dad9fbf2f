"""Deterministic live-room traffic with an independently computed ground truth (no Kafka).

``generate(config)`` yields the records a producer would send, in arrival order;
``compute_truth(config, records)`` recomputes the per-room windows from those records with
its own, simple implementation of contract v1; ``incidents(config)`` lists the injected
incidents. See ``sessions`` (the model and its ranges), ``generate`` and ``truth``.
"""

from streams.sim.generate import Emitted, generate
from streams.sim.sessions import SimConfig, incidents
from streams.sim.truth import compute_truth

__all__ = ["Emitted", "SimConfig", "compute_truth", "generate", "incidents"]
