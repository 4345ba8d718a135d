"""operationIds are generated from the method and the path by one set of rules."""

from __future__ import annotations

import pytest

from service.http.openapi import DocumentConventions, operation_id


@pytest.mark.parametrize(("method", "path", "expected"), [
    ("get", "/api/v1/stations", "listStations"),
    ("post", "/api/v1/stations", "createStation"),
    ("get", "/api/v1/stations/{station_id}", "getStation"),
    ("patch", "/api/v1/stations/{station_id}", "updateStation"),
    ("put", "/api/v1/stations/{station_id}/rules", "replaceStationRules"),
    ("patch", "/api/v1/stations/{station_id}/rules", "updateStationRules"),
    ("post", "/api/v1/stations/{station_id}/readings", "createStationReadings"),
    ("post", "/api/v1/alerts/{alert_id}/ack", "ackAlert"),
    ("post", "/api/v1/alerts/{alert_id}/close", "closeAlert"),
    ("get", "/api/v1/alerts/{alert_id}/report.html", "getAlertReportHtml"),
    ("post", "/api/v1/subscribers/import", "importSubscribers"),
    ("get", "/api/v1/dead-letters", "listDeadLetters"),
    ("post", "/api/v1/exercises", "createExercise"),
    ("delete", "/api/v1/exercises/{exercise_id}", "deleteExercise"),
    ("get", "/api/v1/maintenance", "listMaintenance"),
    ("post", "/api/v1/sirens/{siren_id}/commands", "createSirenCommands"),
    ("get", "/api/v1/categories/{category_id}", "getCategory"),
])
def test_operation_ids_read_like_what_they_do(method, path, expected):
    assert operation_id(method, path) == expected


def test_the_plugin_keeps_a_hand_written_id_and_describes_bare_responses():
    operations = {
        "get": {"responses": {"200": {"content": {}}, "404": {"$ref": "#/components/responses/NOT_FOUND"}}},
        "put": {"operationId": "setRules", "responses": {"default": {}}},
        "parameters": [],
    }
    DocumentConventions().operation_helper(path="/api/v1/stations/{station_id}/rules", operations=operations)
    assert operations["get"]["operationId"] == "getStationRules"
    assert operations["get"]["responses"]["200"]["description"] == "OK"
    assert "description" not in operations["get"]["responses"]["404"]
    assert operations["put"]["operationId"] == "setRules"
    assert operations["put"]["responses"]["default"]["description"] == "Response"
