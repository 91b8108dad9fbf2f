"""Worker logging: Kafka clients' repeated complaints once a minute, not many a second.

A lost broker makes aiokafka log the same connection error tens of times a second (every
retry of every client). The worker logs one line of its own when the broker is lost and one
when it is back; this keeps the clients' lines to one per minute per message.
"""

from __future__ import annotations

import logging

#: Loggers whose repeats are thinned.
NOISY = ("aiokafka",)


class Repeats(logging.Filter):
    """Lets a record through at most once per ``interval`` seconds per (logger, message)."""

    def __init__(self, interval: float = 60.0) -> None:
        super().__init__()
        self.interval = interval
        self._last: dict[tuple[str, object], float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(NOISY):
            return True
        key = (record.name, record.msg)  # the template: "Unable connect to node %s: %s"
        last = self._last.get(key)
        if last is not None and record.created - last < self.interval:
            return False
        if len(self._last) > 10_000:
            self._last.clear()
        self._last[key] = record.created
        return True


def thin_repeats(logger: logging.Logger) -> None:
    """Install :class:`Repeats` on every handler of ``logger`` (the root, once configured)."""
    for handler in logger.handlers:
        if not any(isinstance(f, Repeats) for f in handler.filters):
            handler.addFilter(Repeats())
