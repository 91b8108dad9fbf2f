"""Benchmarks: LivePulse against a plain consumer (ceiling) and a textbook Faust app.

Run ``make bench`` or ``make bench-quick``; see ``bench/README.md``.
"""
