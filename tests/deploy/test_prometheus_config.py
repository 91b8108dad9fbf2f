from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.promtool import promtool

DEPLOY = Path(__file__).parents[2] / "deploy"


def test_prometheus_config_passes_promtool() -> None:
    proc = subprocess.run(
        [promtool(), "check", "config", str(DEPLOY / "prometheus/prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
