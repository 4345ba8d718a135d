"""A long alert through a real ``ews run`` with ``EWS_CAP_EXPIRES_S=60``: the CAP job renews the
message on time (the 30 s rule-job period would be too coarse), every message validates, has
``+08:00`` times and a WMO identifier, and the feed shows the Cancel once the river is back."""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from lxml import etree

from tests.support.infra import free_port, wait_until
from tests.support.service_process import ProcessApi, ServiceProcess

pytestmark = pytest.mark.slow
XSD = Path(__file__).resolve().parents[1] / "data" / "CAP-v1.2.xsd"
CAP = {"cap": "urn:oasis:names:tc:emergency:cap:1.2"}
OID = "2.49.0.1.360.1"
RENEWALS = 2  # at 40 s and 80 s after the Alert


def fetch(service, path):
    try:
        with urllib.request.urlopen(service.base_url + path, timeout=30) as answer:
            return answer.read()
    except urllib.error.HTTPError:
        return None


def post_level(service, value):
    now = datetime.now(timezone.utc).replace(microsecond=0)
    return ProcessApi(service).json("POST", "/stations/PKR-LASKAP/readings",
                {"ts": now.isoformat().replace("+00:00", "Z"), "values": {"water_level": value}})


def test_a_long_alert_is_renewed_before_each_expiry_and_its_cancel_reaches_the_feed(tmp_path):
    schema = etree.XMLSchema(etree.parse(str(XSD)))
    env = {"EWS_MQTT_URL": "", "EWS_EMBEDDED_MQTT_PORT": str(free_port()), "EWS_SEED": "luwu-timur",
           "EWS_CAP_EXPIRES_S": "60", "EWS_CAP_OID": OID, "EWS_LOG_LEVEL": "INFO"}
    with ServiceProcess(tmp_path, database_url=f"sqlite:///{tmp_path / 'ews.db'}", mqtt_url="", env=env) as service:
        service.start()
        rules = ProcessApi(service).json("GET", "/stations/PKR-LASKAP/rules")
        rules["water_level"]["clear_hold_s"] = 0
        rules["quality"]["max_step_per_min"] = None  # the river drops 2.2 m at once here: no spike check (spec 17)
        ProcessApi(service).json("PUT", "/stations/PKR-LASKAP/rules", rules)
        assert post_level(service, 3.2)["accepted"]
        alert_id = wait_until(lambda: next(iter(ProcessApi(service).json("GET", "/alerts?state=active")["items"]), None),
                              30, "the AWAS alert")["id"]
        messages = {}  # identifier -> parsed message, in the order first seen
        deadline = time.monotonic() + 40 * RENEWALS + 30
        while len(messages) < RENEWALS + 1 and time.monotonic() < deadline:
            xml = fetch(service, f"/cap/alerts/{alert_id}.xml")
            if xml is not None:
                doc = etree.fromstring(xml)
                messages.setdefault(doc.findtext("cap:identifier", namespaces=CAP), doc)
            time.sleep(1)
        post_level(service, 1.0)
        feed = wait_until(lambda: (body := fetch(service, "/cap/feed.atom")) and b"Cancel: NORMAL" in body and body,
                          30, "the Cancel in the feed")
        cancel = etree.fromstring(fetch(service, f"/cap/alerts/{alert_id}.xml"))
    chain = list(messages.values()) + [cancel]
    types = [m.findtext("cap:msgType", namespaces=CAP) for m in chain]
    assert types == ["Alert"] + ["Update"] * RENEWALS + ["Cancel"], types
    for message in chain:
        assert schema.validate(message), schema.error_log
        assert re.fullmatch(re.escape(OID) + r"\.\d{4}(\.\d\d){4}\.\d+", message.findtext("cap:identifier", namespaces=CAP))
        for text in [message.findtext("cap:sent", namespaces=CAP)] + message.xpath("cap:info/cap:expires/text()",
                                                                                   namespaces=CAP):
            assert text.endswith("+08:00"), text
    for previous, message in zip(chain, chain[1:]):
        expires = datetime.fromisoformat(previous.find("cap:info", CAP).findtext("cap:expires", namespaces=CAP))
        sent = datetime.fromisoformat(message.findtext("cap:sent", namespaces=CAP))
        assert sent < expires, "a CAP consumer would have shown the alert as expired"
        assert expires - sent > timedelta(seconds=5)
    assert cancel.findtext("cap:identifier", namespaces=CAP).encode() in feed
