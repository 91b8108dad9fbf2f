"""A real Prometheus server for tests: the project's own prometheus.yml and rule files, pointed
at local workers, on loopback, with a temporary data directory, queried over its HTTP API.

Only the scrape targets, the Alertmanager address and the intervals are changed (see
:func:`prepare_config`); the rule files are copied byte for byte. One file is added beside
them: :func:`write_without_offset` copies the recording rules that read data older than a
short test can have (``offset 5m``), without the offset and under a prefixed name, so that
their expressions are evaluated on real data too.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import yaml

from streams import processes
from streams.evaluation.prometheus import Prometheus
from streams.evaluation.prometheus import running_prometheus as launch
from tests.support.promtool import _required

DEPLOY = Path(__file__).parents[2] / "deploy" / "prometheus"
JOB = "livepulse"
#: Prefix of the test-only copies of the rules that need history (see write_without_offset).
WITHOUT_OFFSET = "e2e_without_offset:"
_OFFSET = re.compile(r"\s+offset\s+((?:\d+(?:ms|[smhdwy]))+)")
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def recording_rules(rules_dir: Path = DEPLOY / "rules") -> list[tuple[str, str]]:
    """(record, expr) of every recording rule in ``rules_dir``/*.yml, in file order."""
    rules = []
    for path in sorted(rules_dir.glob("*.yml")):
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            rules += [(r["record"], r["expr"]) for r in group["rules"] if "record" in r]
    return rules


def _reads(expr: str, name: str) -> bool:
    return re.search(rf"(?<![\w:]){re.escape(name)}(?![\w:])", expr) is not None


def _seconds(duration: str) -> float:
    return sum(int(n) * _UNIT_S[unit] for n, unit in re.findall(r"(\d+)(ms|[smhdwy])", duration))


def needing_history(rules: list[tuple[str, str]]) -> dict[str, float]:
    """Recording rules that read through an ``offset``, themselves or via another such rule:
    {name: seconds of history (the largest own offset plus the largest of the rules read)}."""
    found: dict[str, float] = {}
    changed = True
    while changed:
        changed = False
        for name, expr in rules:
            own = max((_seconds(d) for d in _OFFSET.findall(expr)), default=0.0)
            inherited = max((s for other, s in found.items() if _reads(expr, other)), default=0.0)
            if own + inherited > found.get(name, 0.0):
                found[name] = own + inherited
                changed = True
    return {name: found[name] for name, _ in rules if name in found}


def write_without_offset(path: Path, rules: list[tuple[str, str]], names: list[str]) -> None:
    """A rule group with ``names`` as ``WITHOUT_OFFSET + name``: offsets removed, and their
    reads of each other renamed the same way. The project's rules are not touched."""
    out = []
    for name, expr in rules:
        if name not in names:
            continue
        expr = _OFFSET.sub("", expr)
        for other in names:
            expr = re.sub(rf"(?<![\w:]){re.escape(other)}(?![\w:])", WITHOUT_OFFSET + other, expr)
        out.append({"record": WITHOUT_OFFSET + name, "expr": expr})
    groups = {"groups": [{"name": "e2e-without-offset", "rules": out}]}
    path.write_text(yaml.safe_dump(groups, sort_keys=False), encoding="utf-8")


def prometheus() -> str:
    """The Prometheus server binary: required in CI, the test is skipped without it locally."""
    return _required(
        "prometheus", ".ci/run should install Debian's prometheus", "apt-get install prometheus"
    )


def prepare_config(out: Path, targets: list[str], alertmanager: str, interval: str = "1s") -> Path:
    """Copy deploy/prometheus (prometheus.yml and rules/) to ``out`` and rewrite prometheus.yml.

    Changed: the ``livepulse`` job's targets (``targets``), the Alertmanager target
    (``alertmanager``, e.g. a closed loopback port: nothing leaves the machine), and the
    global and job scrape and evaluation intervals (``interval``). Everything else, rule
    files included, is as committed; ``rules/zz-e2e-without-offset.yml`` is added (see
    :func:`write_without_offset`). Returns the new config's path.
    """
    shutil.copytree(DEPLOY / "rules", out / "rules")
    for extra in DEPLOY.iterdir():  # files the config names, e.g. the scrape's password_file
        if extra.is_file() and extra.name != "prometheus.yml":
            shutil.copy(extra, out / extra.name)
    rules = recording_rules(out / "rules")
    write_without_offset(
        out / "rules" / "zz-e2e-without-offset.yml", rules, list(needing_history(rules))
    )
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text(encoding="utf-8"))
    config["global"]["scrape_interval"] = interval
    config["global"]["evaluation_interval"] = interval
    jobs = [job for job in config["scrape_configs"] if job["job_name"] == JOB]
    assert len(jobs) == 1, f"prometheus.yml: expected one job {JOB!r}"
    job = jobs[0]
    if "scrape_interval" in job:
        job["scrape_interval"] = interval
    assert len(job["static_configs"]) == 1, "prometheus.yml: one static_configs entry expected"
    job["static_configs"][0]["targets"] = list(targets)
    managers = config.get("alerting", {}).get("alertmanagers", [])
    for manager in managers:
        for static in manager.get("static_configs", []):
            static["targets"] = [alertmanager]
    path = out / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


class PrometheusServer(Prometheus):
    """The launcher's server, queried over its HTTP API."""

    def api(self, path: str, **params: Any) -> Any:
        """GET /api/v1/<path>; returns ``data``, raising with Prometheus's error otherwise."""
        query = urllib.parse.urlencode(params, doseq=True)
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=30) as resp:
                body = orjson.loads(resp.read())
        except urllib.error.HTTPError as exc:
            body = orjson.loads(exc.read())
        if body.get("status") != "success":
            raise AssertionError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str, at: float) -> list[dict]:
        data = self.api("query", query=expr, time=f"{at:.3f}")
        result = data["result"]
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": result}]
        return result

    def query_range(self, expr: str, start: float, end: float, step: float = 1.0) -> list[dict]:
        return self.api(
            "query_range", query=expr, start=f"{start:.3f}", end=f"{end:.3f}", step=f"{step:g}"
        )["result"]


@contextlib.contextmanager
def running_prometheus(
    config: Path, data: Path, log: Path, binary: str | None = None
) -> Iterator[PrometheusServer]:
    """Start Prometheus on loopback; stopped on exit. Does not wait for readiness: see
    :func:`wait_ready`."""
    flags = ("--log.level=info",)
    with launch(binary or prometheus(), config, data, log, flags, ready_timeout=None) as server:
        yield PrometheusServer(server.url, server.process, server.log)


def wait_ready(server: PrometheusServer, timeout: float = 30) -> float:
    """Poll /-/ready until 200; returns the seconds it took."""
    return processes.wait_ready(server.process, server.url, server.log, timeout)
