"""docker-compose.yml and the Dockerfile, checked statically (no Docker engine here): the Compose
spec, pinned images, LIVEPULSE_ settings that exist, Prometheus scraping every worker, mounts
that exist, health checks, and only the three UIs published."""

from __future__ import annotations

import fnmatch
import re
import subprocess
from pathlib import Path, PurePosixPath

import bcrypt
import pytest
import yaml

from streams.settings import Settings
from tests.support.promtool import amtool, promtool, tools_venv

ROOT = Path(__file__).parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
PROMETHEUS_FILE = ROOT / "deploy" / "prometheus" / "prometheus.yml"

UI_PORTS = {"grafana": 3000, "prometheus": 9090, "alertmanager": 9093}
# Services with no endpoint to probe; each must say so with `healthcheck: {disable: true}`.
NO_PROBE = {"simulator": "a producer; its traffic shows on the dashboard"}

_VAR = re.compile(r"\$\$|\$\{(\w+)(?:(:?[-?])([^}]*))?\}|\$(\w+)")


def interpolate(value: str) -> str:
    """Compose interpolation as on a machine with no such variables set: defaults apply."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(4)
        if match.group(2) in (":-", "-"):
            return match.group(3)
        raise AssertionError(f"${{{name}}} has no default: `docker compose up` needs it set")

    return _VAR.sub(one, value)


def _resolve(node: object) -> object:
    if isinstance(node, str):
        return interpolate(node)
    if isinstance(node, list):
        return [_resolve(x) for x in node]
    if isinstance(node, dict):
        return {k: _resolve(v) for k, v in node.items()}
    return node


@pytest.fixture(scope="module")
def compose() -> dict:
    return _resolve(yaml.safe_load(COMPOSE_FILE.read_text()))


@pytest.fixture(scope="module")
def services(compose: dict) -> dict[str, dict]:
    return compose["services"]


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def command(service: dict) -> list[str]:
    cmd = service.get("command") or []
    return cmd.split() if isinstance(cmd, str) else list(cmd)


def workers(services: dict[str, dict]) -> dict[str, dict]:
    return {name: s for name, s in services.items() if command(s)[:2] == ["livepulse", "worker"]}


def bind_mounts(service: dict) -> list[tuple[Path, str]]:
    """(host path, container path) of the service's bind mounts."""
    out = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            if volume.get("type") == "bind":
                out.append((ROOT / volume["source"], volume["target"]))
            continue
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            out.append((ROOT / source, target))
    return out


def host_path(service: dict, container_path: str) -> Path | None:
    """The host file a container path of the service comes from, through its bind mounts."""
    wanted = PurePosixPath(container_path)
    for host, target in bind_mounts(service):
        target_path = PurePosixPath(target)
        if wanted == target_path:
            return host
        if target_path in wanted.parents:
            return host / wanted.relative_to(target_path)
    return None


def flag(service: dict, name: str) -> str:
    for arg in command(service):
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1]
    raise AssertionError(f"no --{name}= in {command(service)}")


def test_compose_file_is_valid_against_the_compose_spec() -> None:
    checker = tools_venv("check-jsonschema")
    proc = subprocess.run(
        [checker, "--builtin-schema", "vendor.compose-spec", str(COMPOSE_FILE)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_image_is_pinned(services: dict[str, dict]) -> None:
    for name, service in services.items():
        image = service.get("image")
        assert image, f"{name}: no image (a built service needs a tag too, to share it)"
        reference = image.split("@", 1)[0]
        repository, _, tag = reference.rpartition(":")
        assert repository and "/" not in tag, f"{name}: {image} has no tag"
        assert tag != "latest", f"{name}: {image} is not pinned"
        if "build" not in service:
            assert re.search(r"\d", tag), f"{name}: {image}: pin a version, not {tag!r}"


def test_livepulse_variables_are_settings(compose: dict, services: dict[str, dict]) -> None:
    fields = Settings.model_fields
    text = COMPOSE_FILE.read_text() + (ROOT / "Dockerfile").read_text()
    named = set(re.findall(r"\bLIVEPULSE_[A-Z0-9_]+", text))
    assert named
    for name in sorted(named):
        assert name.removeprefix("LIVEPULSE_").lower() in fields, f"{name} is no setting"
    for service_name, service in services.items():
        values = {
            k.removeprefix("LIVEPULSE_").lower(): v
            for k, v in environment(service).items()
            if k.startswith("LIVEPULSE_")
        }
        # files the service gets as compose configs are checked from their host copies
        for config in service.get("configs", []):
            for key, value in values.items():
                if value == config["target"]:
                    values[key] = str(ROOT / compose["configs"][config["source"]]["file"])
        if values:
            Settings(**values)  # raises on a bad value
        others = [
            k for k in environment(service) if not k.startswith(("LIVEPULSE_", "KAFKA_", "GF_"))
        ]
        assert not others, f"{service_name}: settings outside LIVEPULSE_: {others}"


def test_two_workers_of_one_group(services: dict[str, dict]) -> None:
    found = workers(services)
    assert len(found) >= 2, f"worker services: {sorted(found)}"
    envs = [environment(s) for s in found.values()]
    for key in ("LIVEPULSE_APP_ID", "LIVEPULSE_PARTITIONS", "LIVEPULSE_BROKER"):
        assert len({env.get(key) for env in envs}) == 1, f"workers differ in {key}"
    for name, service in found.items():
        env = environment(service)
        assert env.get("LIVEPULSE_WEB_HOST") == "0.0.0.0", f"{name} binds only loopback"
        port = env.get("LIVEPULSE_WEB_PORT", str(Settings.model_fields["web_port"].default))
        probe = " ".join(service["healthcheck"]["test"])
        assert f"127.0.0.1:{port}/ready" in probe, f"{name}: health check {probe}"
    advertised = [environment(s).get("LIVEPULSE_WEB_ADVERTISED_HOST") for s in found.values()]
    assert all(advertised) and len(set(advertised)) == len(advertised), (
        f"each worker must advertise its own host (Faust's canonical URL): {advertised}"
    )
    for service in found.values():
        assert environment(service)["LIVEPULSE_WEB_ADVERTISED_HOST"] == service.get("hostname")
    state = [target for s in found.values() for _, target in bind_mounts(s)]
    assert not state, "workers keep state in named volumes, not host paths"
    volumes = [v for s in found.values() for v in s.get("volumes", [])]
    assert len(volumes) == len(set(volumes)), "two workers share a state volume"


def test_livepulse_processes_run_under_an_init(services: dict[str, dict]) -> None:
    """As PID 1, a Python process ignores SIGTERM it has no handler for: every `docker compose
    stop` would wait out the grace period and kill it."""
    for name, service in services.items():
        if service.get("image", "").startswith("livepulse"):
            assert service.get("init") is True, f"{name} runs without an init"


def test_prometheus_and_alertmanager_are_the_versions_ci_checks(
    services: dict[str, dict],
) -> None:
    """The compose stack runs the major version of Prometheus and the version of Alertmanager
    whose promtool and amtool check deploy/ in CI (Debian's packages)."""
    ran = subprocess.run([promtool(), "--version"], capture_output=True, text=True, check=True)
    promtool_major = re.search(r"version (\d+)\.", ran.stdout + ran.stderr).group(1)
    prometheus_tag = services["prometheus"]["image"].split(":v", 1)[1]
    assert prometheus_tag.split(".")[0] == promtool_major, prometheus_tag
    ran = subprocess.run([amtool(), "--version"], capture_output=True, text=True, check=True)
    amtool_version = re.search(r"version (\d+\.\d+)\.", ran.stdout + ran.stderr).group(1)
    alertmanager_tag = services["alertmanager"]["image"].split(":v", 1)[1]
    assert alertmanager_tag.rsplit(".", 1)[0] == amtool_version, alertmanager_tag


def test_the_kafka_health_check_does_not_start_a_full_size_jvm(services: dict[str, dict]) -> None:
    probe = " ".join(services["kafka"]["healthcheck"]["test"])
    assert "KAFKA_HEAP_OPTS=" in probe and "-Xmx64m" in probe, probe


def test_prometheus_scrapes_every_worker() -> None:
    config = yaml.safe_load(PROMETHEUS_FILE.read_text())
    services = _resolve(yaml.safe_load(COMPOSE_FILE.read_text()))["services"]
    expected = {
        f"{name}:{environment(s).get('LIVEPULSE_WEB_PORT', '6066')}"
        for name, s in workers(services).items()
    }
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "livepulse"]
    targets = {t for sc in job.get("static_configs", []) for t in sc["targets"]}
    assert targets == expected, (
        f"deploy/prometheus/prometheus.yml job livepulse scrapes {sorted(targets)}; "
        f"the compose workers are {sorted(expected)}"
    )


def test_prometheus_loads_rules_and_sends_alerts_to_alertmanager(
    services: dict[str, dict],
) -> None:
    prometheus = services["prometheus"]
    config_path = flag(prometheus, "config.file")
    host = host_path(prometheus, config_path)
    assert host == PROMETHEUS_FILE, f"{config_path} comes from {host}"
    config = yaml.safe_load(PROMETHEUS_FILE.read_text())

    targets = {
        t
        for am in (config.get("alerting") or {}).get("alertmanagers", [])
        for sc in am.get("static_configs", [])
        for t in sc["targets"]
    }
    assert targets == {"alertmanager:9093"}, (
        f"prometheus.yml sends alerts to {sorted(targets) or 'nobody'}; "
        "the compose Alertmanager is alertmanager:9093"
    )

    patterns = config.get("rule_files") or []
    assert patterns, "prometheus.yml loads no rule files"
    config_dir = PurePosixPath(config_path).parent
    for pattern in patterns:
        in_container = config_dir / pattern
        mounted = host_path(prometheus, str(in_container.parent))
        assert mounted is not None, f"rule files {in_container} are not mounted"
        matches = [p for p in mounted.glob("*") if fnmatch.fnmatch(p.name, in_container.name)]
        assert matches, f"rule_files {pattern!r} matches no file in {mounted}"


def test_alertmanager_and_grafana_read_the_deploy_files(services: dict[str, dict]) -> None:
    am = services["alertmanager"]
    assert host_path(am, flag(am, "config.file")) == (
        ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
    )
    grafana = services["grafana"]
    provisioning = host_path(grafana, "/etc/grafana/provisioning/datasources/prometheus.yml")
    assert provisioning is not None and provisioning.exists()
    home = environment(grafana)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert host_path(grafana, home) == ROOT / "deploy/grafana/dashboards/livepulse.json"
    provider = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/dashboards/livepulse.yml").read_text()
    )
    (only,) = provider["providers"]
    mounted = host_path(grafana, only["options"]["path"])
    assert mounted is not None and (mounted / "livepulse.json").exists()
    datasources = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text()
    )["datasources"]
    assert {d["url"] for d in datasources} == {
        "http://prometheus:9090",
        "http://alertmanager:9093",
    }
    assert {"prometheus", "alertmanager"} <= set(services)


def test_mounted_host_paths_exist_and_named_volumes_are_declared(compose: dict) -> None:
    declared = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        for host, target in bind_mounts(service):
            assert host.exists(), f"{name}: {host} (mounted at {target}) does not exist"
        for volume in service.get("volumes", []):
            if isinstance(volume, str) and not volume.startswith((".", "/")):
                assert volume.split(":")[0] in declared, f"{name}: undeclared volume {volume}"


def test_only_the_three_uis_are_published(services: dict[str, dict]) -> None:
    published: dict[str, list[int]] = {}
    for name, service in services.items():
        for port in service.get("ports", []):
            if isinstance(port, dict):
                host, container = port.get("published"), port["target"]
            else:
                parts = str(port).split(":")
                host, container = parts[-2], parts[-1]
            assert int(host) == int(container), f"{name}: {port}"
            published.setdefault(name, []).append(int(container))
    assert published == {name: [port] for name, port in UI_PORTS.items()}


def test_health_checks_and_restart_policies(services: dict[str, dict]) -> None:
    for name, service in services.items():
        restart = service.get("restart")
        assert restart, f"{name}: no restart policy"
        if restart == "no":
            continue  # a one-shot job
        check = service.get("healthcheck")
        assert check, f"{name}: no health check"
        if name in NO_PROBE:
            assert check == {"disable": True}, f"{name}: expected an explicit disable"
        else:
            assert check.get("test") and not check.get("disable"), f"{name}: {check}"
            assert check.get("interval") and check.get("retries"), f"{name}: {check}"


def test_kafka_is_kraft_and_init_creates_every_topic(services: dict[str, dict]) -> None:
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = environment(kafka)
    assert "controller" in env["KAFKA_PROCESS_ROLES"]
    assert "KAFKA_ZOOKEEPER_CONNECT" not in env

    init = services["kafka-init"]
    assert init["restart"] == "no"
    init_env = environment(init)
    script = " ".join(command(init))
    topics = [
        f
        for f in Settings.model_fields
        if f.startswith("topic_") and f not in ("topic_batches", "topic_retention_hours")
    ]
    assert {"topic_views", "topic_clicks", "topic_orders", "topic_deadletter"} <= set(topics)
    for field in topics:
        var = f"LIVEPULSE_{field.upper()}"
        assert f"${var}" in script, f"kafka-init does not create {var}"
        assert init_env.get(var), f"kafka-init has no {var}"
    assert '--partitions "$LIVEPULSE_PARTITIONS"' in script
    # the demo stack's topics keep hours, not Kafka's 7 days (the simulator writes millions)
    assert "retention.ms=$(( ${LIVEPULSE_TOPIC_RETENTION_HOURS%.*} * 3600000 ))" in script
    assert float(init_env["LIVEPULSE_TOPIC_RETENTION_HOURS"]) <= 24
    for name, service in {**workers(services), "simulator": services["simulator"]}.items():
        env = environment(service)
        for key, value in init_env.items():
            assert env.get(key) == value, f"{name} and kafka-init differ in {key}"
        assert service["depends_on"]["kafka-init"]["condition"] == (
            "service_completed_successfully"
        )


def test_simulator_sends_to_kafka_in_real_time(services: dict[str, dict]) -> None:
    cmd = command(services["simulator"])
    assert cmd[:2] == ["livepulse", "simulate"]
    assert "--speed=1" in cmd
    assert not any(arg.startswith(("--out", "-o")) for arg in cmd), "it must send to Kafka"


def test_dockerfile() -> None:
    lines = [
        line.strip()
        for line in (ROOT / "Dockerfile").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    (base,) = [line.split()[1] for line in lines if line.startswith("FROM ")]
    assert re.fullmatch(r"python:3\.\d+\.\d+-slim(-\w+)?(@sha256:[0-9a-f]{64})?", base), base
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0"), "the image must not run as root"
    copied = " ".join(line for line in lines if line.startswith("COPY "))
    for needed in ("pyproject.toml", "requirements.lock", "streams", "schemas"):
        assert needed in copied, f"the image is not built from {needed}"
    assert any("pip install -r requirements.lock" in line for line in lines), "lock ignored"
    assert lines[-1] == 'CMD ["livepulse", "worker"]'
    ignore = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert ignore[0] == "*", ".dockerignore should start from nothing"
    for needed in ("pyproject.toml", "README.md", "requirements.lock", "streams/", "schemas/"):
        assert f"!{needed}" in ignore, f".dockerignore keeps {needed} out"


def test_interpolation_helper() -> None:
    assert interpolate("${A:-4}") == "4"
    assert interpolate("$$x ${B-y}") == "$x y"
    with pytest.raises(AssertionError):
        interpolate("${NOPE}")


def test_workers_ask_for_the_credentials_prometheus_sends(compose: dict) -> None:
    """The stack turns basic auth on: each worker reads a web config (a compose config, not a
    mount) whose users include the one prometheus.yml scrapes as, with its password file's
    password; the health check's /ready stays open."""
    from streams.worker.web_auth import OPEN_PATHS, load

    job = next(
        j
        for j in yaml.safe_load(PROMETHEUS_FILE.read_text())["scrape_configs"]
        if j["job_name"] == "livepulse"
    )
    auth = job["basic_auth"]
    password = (PROMETHEUS_FILE.parent / auth["password_file"]).read_text().strip()
    assert "/ready" in OPEN_PATHS and "/metrics" not in OPEN_PATHS
    for name, service in workers(compose["services"]).items():
        path = environment(service)["LIVEPULSE_WEB_CONFIG_FILE"]
        (source,) = [c["source"] for c in service["configs"] if c["target"] == path]
        config = load(ROOT / compose["configs"][source]["file"])
        hashed = config.users[auth["username"]]
        assert bcrypt.checkpw(password.encode(), hashed), f"{name}: the password does not match"


def test_the_worker_template_holds_no_environment_every_worker_replaces(compose: dict) -> None:
    """Each worker sets its own environment (its advertised host), and a YAML merge replaces
    a mapping whole: an environment in x-worker would be a dead copy that drifts."""
    template = compose["x-worker"]
    workers_ = workers(compose["services"])
    assert all("environment" in s for s in workers_.values())
    assert "environment" not in template, "x-worker's environment is never used"
