"""Test order when the suite runs on several processes (``make test``: pytest-xdist, by file).

xdist hands out whole files in collection order; the long fault tests go first, so that the
short files fill the other process meanwhile instead of one long test running alone at the end.
A plain ``pytest`` keeps the usual order: unit tests, then integration tests.
"""

from __future__ import annotations

import pytest


def _weight(item: pytest.Item) -> int:
    """0: a file with a test marked slow; 1: other integration tests; 2: the rest."""
    if item.get_closest_marker("slow") is not None:
        return 0
    return 1 if "integration" in item.path.parts else 2


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not hasattr(config, "workerinput"):  # not an xdist worker
        return
    weight: dict[str, int] = {}
    for item in items:
        weight[item.path.as_posix()] = min(weight.get(item.path.as_posix(), 2), _weight(item))
    # sorted() is stable: within a weight, files and tests keep their order
    items[:] = sorted(items, key=lambda item: weight[item.path.as_posix()])
