"""LivePulse: per-room live-commerce funnel metrics from Kafka, kept by Faust, served to Prometheus."""

__version__ = "0.1.0"
