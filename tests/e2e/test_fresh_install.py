"""`pip install .` into a fresh virtual environment, then the README's run command: /readyz answers 200."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.support.infra import free_port

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.broker]


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_pip_install_then_ews_run_is_ready_with_no_other_setup(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    # From a copy without build artefacts: setuptools' in-tree build/ keeps files the tree no longer
    # has (a renamed migration there is a second alembic head), which a clean clone never has.
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "node_modules", "*.egg-info", "__pycache__", "ews.db*", ".hypothesis"))
    install = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(source)], capture_output=True, text=True,
                             timeout=900)
    assert install.returncode == 0, install.stderr[-3000:]
    http_port, mqtt_port = free_port(), free_port()
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "EWS_SEED": "luwu-timur",
           "EWS_HTTP_PORT": str(http_port), "EWS_EMBEDDED_MQTT_PORT": str(mqtt_port)}
    workdir = tmp_path / "run"
    workdir.mkdir()
    service = subprocess.Popen([str(venv / "bin" / "ews"), "run"], cwd=workdir, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        status, body = 0, b""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and status != 200:
            time.sleep(0.5)
            if service.poll() is not None:
                break
            try:
                status, body = get(f"http://127.0.0.1:{http_port}/readyz")
            except OSError:
                continue
        assert status == 200, (status, body, service.stdout.read() if service.poll() is not None else "")
        assert get(f"http://127.0.0.1:{http_port}/")[0] == 200  # the dashboard, served from the installed package
        assert (workdir / "ews.db").exists()  # the default SQLite database, in the working directory
    finally:
        service.terminate()
        output, _ = service.communicate(timeout=30)
    assert service.returncode == 0, output[-3000:]
    assert "NOT for production" in output  # the embedded broker says what it is
