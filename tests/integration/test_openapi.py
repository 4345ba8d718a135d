"""The OpenAPI document the app serves passes the outside checks client generators rely on.

- ``openapi-spec-validator`` (PyPI): the document is valid OpenAPI 3.0;
- every operation has an ``operationId``, unique, readable, and stable (the names below are
  a contract with generated clients: renaming one breaks them);
- Spectral's ``spectral:oas`` ruleset finds nothing at warning level (the pinned CLI in
  ``.ci/spectral``, which ``.ci/run`` installs with ``npm ci``).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from openapi_spec_validator import validate

from tests.support.api import make_harness

ROOT = Path(__file__).resolve().parents[2]
SPECTRAL_DIR = ROOT / ".ci" / "spectral"
SPECTRAL = SPECTRAL_DIR / "node_modules" / ".bin" / "spectral"
METHODS = ("get", "put", "post", "delete", "patch")

# Operations of the first release: their ids must never change.
STABLE_IDS = {
    ("get", "/api/v1/stations"): "listStations",
    ("post", "/api/v1/stations"): "createStation",
    ("get", "/api/v1/stations/{station_id}"): "getStation",
    ("patch", "/api/v1/stations/{station_id}"): "updateStation",
    ("delete", "/api/v1/stations/{station_id}"): "deleteStation",
    ("get", "/api/v1/stations/{station_id}/rules"): "getStationRules",
    ("put", "/api/v1/stations/{station_id}/rules"): "replaceStationRules",
    ("get", "/api/v1/stations/{station_id}/readings"): "getStationReadings",
    ("post", "/api/v1/stations/{station_id}/readings"): "createStationReadings",
    ("get", "/api/v1/alerts"): "listAlerts",
    ("get", "/api/v1/alerts/{alert_id}"): "getAlert",
    ("post", "/api/v1/alerts/{alert_id}/ack"): "ackAlert",
    ("get", "/api/v1/subscribers"): "listSubscribers",
    ("post", "/api/v1/subscribers"): "createSubscriber",
    ("post", "/api/v1/subscribers/import"): "importSubscribers",
    ("get", "/api/v1/notifications"): "listNotifications",
    ("post", "/api/v1/broadcasts"): "createBroadcast",
    ("get", "/api/v1/dead-letters"): "listDeadLetters",
    ("get", "/api/v1/tokens"): "listTokens",
    ("post", "/api/v1/tokens"): "createToken",
    ("delete", "/api/v1/tokens/{token_id}"): "deleteToken",
    ("get", "/api/v1/audit"): "listAudit",
}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The document as the app serves it (no token needed), and the file Spectral reads."""
    harness = make_harness("sqlite:///" + str(tmp_path_factory.mktemp("openapi") / "ews.db"))
    response = harness.client.get("/api/v1/openapi.json")
    assert response.status_code == 200 and response.is_json
    doc = response.get_json()
    path = tmp_path_factory.mktemp("openapi-doc") / "openapi.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    return doc, path


def operations(doc):
    for path, item in doc["paths"].items():
        for method in METHODS:
            if method in item:
                yield method, path, item[method]


def test_the_served_document_is_valid_openapi_3(served):
    doc, _ = served
    assert doc["openapi"].startswith("3.")
    validate(doc)  # raises with the first problem
    assert doc["servers"] and doc["info"]["contact"]["name"]


def test_every_operation_has_a_unique_readable_operation_id(served):
    doc, _ = served
    ids = {}
    for method, path, operation in operations(doc):
        op_id = operation.get("operationId")
        assert op_id, f"{method.upper()} {path} has no operationId"
        assert re.fullmatch(r"[a-z]+(?:[A-Z][a-z0-9]*)+", op_id), op_id
        assert op_id not in ids, f"{op_id} names both {ids.get(op_id)} and {method.upper()} {path}"
        ids[op_id] = f"{method.upper()} {path}"
        for status, answer in operation["responses"].items():
            assert "$ref" in answer or answer.get("description"), f"{method.upper()} {path} {status}"
    served_ids = {(m, p): o["operationId"] for m, p, o in operations(doc)}
    missing = {k: v for k, v in STABLE_IDS.items() if served_ids.get(k) != v}
    assert not missing, f"changed or missing operationIds: {missing}"


def _spectral() -> Path:
    """The pinned Spectral CLI; installed from the lockfile when npm is here and it is not yet."""
    if not SPECTRAL.exists() and shutil.which("npm"):
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--prefix", str(SPECTRAL_DIR)],
                       capture_output=True, text=True, timeout=600)
    if not SPECTRAL.exists():
        pytest.skip("Spectral is not installed: run `npm ci --prefix .ci/spectral` (.ci/run does)")
    return SPECTRAL


def test_spectral_oas_ruleset_finds_nothing_at_warning_level(served):
    _, path = served
    spectral = _spectral()
    result = subprocess.run(
        [str(spectral), "lint", "--ruleset", str(SPECTRAL_DIR / ".spectral.yaml"), "--format", "json",
         "--fail-severity", "warn", str(path)],
        capture_output=True, text=True, timeout=300, cwd=SPECTRAL_DIR)
    # The JSON list comes first; Spectral may print a summary line after it.
    findings, _ = json.JSONDecoder().raw_decode(result.stdout.lstrip()) if result.stdout.strip() else ([], 0)
    # severity 0 = error, 1 = warning (docs/api.md lists any warning we keep, with its reason: none today)
    problems = [f"{f['code']} at {'.'.join(map(str, f['path']))}: {f['message']}" for f in findings
                if f.get("severity", 3) <= 1]
    assert not problems, "\n".join(problems)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
