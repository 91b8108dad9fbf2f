"""The Prometheus rules (deploy/prometheus/rules) pass promtool's checks and their own unit
tests (deploy/prometheus/tests, ``promtool test rules``), and the config that loads them is
valid. promtool is required in CI and the tests are skipped without it on a laptop."""

from __future__ import annotations

import importlib.util
import re
import subprocess
from pathlib import Path

import pytest

from tests.support.promtool import promtool

PROMETHEUS = Path(__file__).parents[2] / "deploy" / "prometheus"
RULES = sorted((PROMETHEUS / "rules").glob("*.yml"))
RULE_TESTS = sorted((PROMETHEUS / "tests").glob("*.yml"))


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [promtool(), *args], capture_output=True, text=True, timeout=300, cwd=PROMETHEUS
    )


def test_rule_files_and_their_tests_are_there() -> None:
    assert [p.name for p in RULES] == ["alerts.yml", "recording.yml"]
    assert {p.name for p in RULE_TESTS} == {
        "recording_test.yml",
        "room_alerts_test.yml",
        "pipeline_alerts_test.yml",
    }


def test_rule_tests_are_what_their_generator_writes() -> None:
    spec = importlib.util.spec_from_file_location("generate", PROMETHEUS / "tests/generate.py")
    assert spec is not None and spec.loader is not None
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    assert set(generate.FILES) == {p.name for p in RULE_TESTS}
    for name, build in generate.FILES.items():
        committed = (PROMETHEUS / "tests" / name).read_text()
        assert build() == committed, f"{name}: run python deploy/prometheus/tests/generate.py"


def test_rules_pass_promtool_check() -> None:
    proc = run("check", "rules", *map(str, RULES))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    found = [int(n) for n in re.findall(r"SUCCESS: (\d+) rules found", proc.stdout)]
    assert len(found) == len(RULES) and all(found), proc.stdout


@pytest.mark.parametrize("test_file", RULE_TESTS, ids=lambda p: p.stem)
def test_rule_unit_tests_pass(test_file: Path) -> None:
    proc = run("test", "rules", str(test_file))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout, proc.stdout


def test_config_with_its_rule_files_passes_promtool_check() -> None:
    proc = run("check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # check config also checks the rule files the config loads: it must load all of ours
    assert f"SUCCESS: {len(RULES)} rule files found" in proc.stdout, proc.stdout
    for path in RULES:
        assert re.search(rf"Checking \S*rules/{path.name}\n\s+SUCCESS", proc.stdout), proc.stdout
