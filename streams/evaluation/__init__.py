"""Offline evaluations of the alerts: the in-stream detector and the Prometheus rules
against injected incidents.
"""
