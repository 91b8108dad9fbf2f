"""LivePulse: per-room live-commerce funnel metrics, from Kafka through Faust to Prometheus."""

__version__ = "0.1.0"
