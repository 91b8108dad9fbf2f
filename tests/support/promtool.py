"""Locating the real promtool, amtool, Alertmanager and the tools venv's commands: required in
CI (.ci/run installs the Debian packages, `make test` builds .venv-tools), optional on a laptop."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

#: Pinned CLI tools kept out of the project's venv (`make .venv-tools`).
TOOLS_VENV = Path(__file__).parents[2] / ".venv-tools"


def _required(name: str, missing: str, install: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is missing in CI: {missing}")
        pytest.skip(f"{name} not installed ({install})")
    return path


def promtool() -> str:
    return _required(
        "promtool", ".ci/run should install Debian's prometheus", "apt-get install prometheus"
    )


def amtool() -> str:
    return _required(
        "amtool",
        ".ci/run should install Debian's prometheus-alertmanager",
        "apt-get install prometheus-alertmanager",
    )


def alertmanager() -> str:
    return _required(
        "prometheus-alertmanager",
        ".ci/run should install Debian's prometheus-alertmanager",
        "apt-get install prometheus-alertmanager",
    )


def tools_venv(command: str) -> str:
    """A command of .venv-tools (check-jsonschema, python with grafana-foundation-sdk)."""
    path = TOOLS_VENV / "bin" / command
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{path} is missing in CI: `make test` should build .venv-tools first")
        pytest.skip(f"{path} not found (make .venv-tools)")
    return str(path)
