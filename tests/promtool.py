"""Locating the real promtool: required in CI (.ci/run installs it), optional on a laptop."""

from __future__ import annotations

import os
import shutil

import pytest


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing in CI: .ci/run should install Debian's prometheus")
        pytest.skip("promtool not installed (apt-get install prometheus)")
    return path
