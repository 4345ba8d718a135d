"""Subscriber, notification and broadcast routes, and the Twilio webhooks, on a real database."""

from __future__ import annotations

import os
import threading
import time
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa
from twilio.request_validator import RequestValidator
from werkzeug.serving import make_server

from service import subscribers
from service.db import schema
from service.bootstrap import sms_dispatcher
from service.dispatch import ConsoleProvider, make_provider
from service.http import create_app
from service.tokens import create_token
from sinks.twilio import FakeTwilio
from tests.support.infra import free_port
from tests.support.services import make_services

AUTH_TOKEN = "shared-secret-of-the-aggregator"
PUBLIC = "https://ews.example.go.id"


@pytest.fixture
def services(database_url):
    services = make_services(database_url, TWILIO_AUTH_TOKEN=AUTH_TOKEN, EWS_PUBLIC_URL=PUBLIC)
    yield services
    services.engine.dispose()


@pytest.fixture
def client(services):
    return create_app(services).test_client()


def bearer(services, role):
    return {"Authorization": f"Bearer {create_token(services.engine, role, f'test-{role}')[1]}"}


def signed(path: str, form: dict, token: str = AUTH_TOKEN) -> dict:
    return {"X-Twilio-Signature": RequestValidator(token).compute_signature(PUBLIC + path, form)}


def subscriber(services, phone):
    with services.engine.connect() as conn:
        return subscribers.by_phone(conn, phone)


def test_subscriber_crud_with_phone_forms_conflicts_and_roles(services, client):
    op = bearer(services, "operator")
    made = client.post("/api/v1/subscribers", headers=op, json={
        "phone": "0812-3456-7890", "name": "Bu Rahma", "areas": [{"kecamatan": "Malili", "desa": "Laskap"}]})
    assert made.status_code == 201, made.json
    body = made.json
    assert body["phone"] == "+6281234567890" and body["language"] == "id" and body["role"] == "resident"
    assert body["opted_out"] is False and body["areas"] == [{"kecamatan": "Malili", "desa": "Laskap"}]

    again = client.post("/api/v1/subscribers", headers=op, json={"phone": "+62 0812 3456 7890", "areas": [{"kecamatan": "Wotu"}]})
    assert again.status_code == 409 and again.content_type == "application/problem+json"
    bad = client.post("/api/v1/subscribers", headers=op, json={"phone": "12ab", "areas": [{"kecamatan": "Wotu"}]})
    assert bad.status_code == 422 and [e["field"] for e in bad.json["errors"]] == ["phone"]
    no_areas = client.post("/api/v1/subscribers", headers=op, json={"phone": "0813 1111 2222"})
    assert no_areas.status_code == 422 and "areas" in {e["field"] for e in no_areas.json["errors"]}

    assert client.get("/api/v1/subscribers", headers=bearer(services, "viewer")).status_code == 403
    assert client.get("/api/v1/subscribers").status_code == 401
    listed = client.get("/api/v1/subscribers?phone=6281234567890", headers=op).json
    assert [s["id"] for s in listed["items"]] == [body["id"]] and listed["next_cursor"] is None

    url = f"/api/v1/subscribers/{body['id']}"
    patched = client.patch(url, headers=op, json={"language": "en", "areas": [{"kecamatan": "Malili"}]})
    assert patched.status_code == 200 and patched.json["areas"] == [{"kecamatan": "Malili", "desa": None}]
    assert client.patch(url, headers=op, json={"opted_out": True}).status_code == 422
    assert client.delete(url, headers=op).status_code == 204
    assert client.get(url, headers=op).status_code == 404


def test_csv_import_reports_errors_per_row(services, client):
    op = bearer(services, "operator")
    client.post("/api/v1/subscribers", headers=op, json={"phone": "0812-0000-0001", "areas": [{"kecamatan": "Wotu"}]})
    csv_text = (
        "phone,name,language,kecamatan,desa\n"
        "0812-3456-7890,Pak Amir,id,Malili,Laskap\n"
        "+62 0813 1111 2222,Ibu Sari,en,Wotu,\n"
        "not-a-phone,X,id,Malili,Laskap\n"
        "0812-0000-0001,Dup,id,Wotu,\n"
        "0812 3456 7890,Again,id,Malili,Laskap\n"
        "0815 2222 3333,Lang,fr,Malili,\n"
        "0816 2222 3333,NoPlace,id,,\n"
    )
    answer = client.post("/api/v1/subscribers/import", headers={**op, "Content-Type": "text/csv"}, data=csv_text)
    assert answer.status_code == 200, answer.json
    assert answer.json["created"] == 2
    assert [(e["row"], e["field"]) for e in answer.json["errors"]] == [
        (4, "phone"), (5, "phone"), (6, "phone"), (7, "language"), (8, "areas.0.kecamatan")]
    assert subscriber(services, "+6281311112222").areas == [{"kecamatan": "Wotu", "desa": None}]
    bad_header = client.post("/api/v1/subscribers/import", headers=op, data="name,desa\nx,y\n")
    assert bad_header.status_code == 422
    # Old Mac line ends (a bare CR) are line ends, not a crash (schemathesis found the 500).
    mac = client.post("/api/v1/subscribers/import", headers=op, data="phone,kecamatan\r0812 7777 1111,Wotu\r")
    assert mac.status_code == 200 and mac.json["created"] == 1, mac.json


def test_notifications_show_phone_numbers_only_to_operators(services, client):
    now = datetime.now(timezone.utc)
    with services.engine.begin() as conn:
        conn.execute(sa.insert(schema.notifications).values(
            alert_id=7, phone="+6281234567890", language="id", kind="warning", body="BPBD LUTIM: tes", status="sent",
            created_at=now, updated_at=now))
    viewer = client.get("/api/v1/notifications?alert_id=7&status=sent", headers=bearer(services, "viewer"))
    assert viewer.status_code == 200 and len(viewer.json["items"]) == 1 and "phone" not in viewer.json["items"][0]
    operator = client.get("/api/v1/notifications?alert_id=7", headers=bearer(services, "operator"))
    assert operator.json["items"][0]["phone"] == "+6281234567890"
    assert client.get("/api/v1/notifications?status=lost", headers=bearer(services, "viewer")).status_code == 422


def test_a_broadcast_goes_through_the_dispatcher_to_its_area_respecting_opt_outs(services, client):
    op = bearer(services, "operator")
    for phone, areas in (("0812-0000-0001", [{"kecamatan": "Malili", "desa": "Laskap"}]),
                         ("0812-0000-0002", [{"kecamatan": "Wotu"}]),
                         ("0812-0000-0003", [{"kecamatan": "Malili"}])):
        client.post("/api/v1/subscribers", headers=op, json={"phone": phone, "areas": areas})
    opted_out = subscriber(services, "+6281200000003").id
    with services.engine.begin() as conn:
        subscribers.set_opted_out(conn, opted_out, True, datetime.now(timezone.utc))
    assert client.post("/api/v1/broadcasts", headers=bearer(services, "viewer"),
                       json={"message": "x", "areas": [{"kecamatan": "Malili"}]}).status_code == 403
    too_long = client.post("/api/v1/broadcasts", headers=op, json={"message": "x" * 150, "areas": [{"kecamatan": "Malili"}]})
    assert too_long.status_code == 422 and too_long.json["errors"][0]["field"] == "message"
    sent = client.post("/api/v1/broadcasts", headers=op, json={
        "message": "Apel siaga banjir besok 07:30 di kantor camat \u2014 harap hadir", "areas": [{"kecamatan": "Malili"}]})
    assert sent.status_code == 202, sent.json
    assert sent.json["recipients"] == 1 and sent.json["created_by"].startswith("test-operator")
    console = ConsoleProvider(stream=open(os.devnull, "w"))
    d = sms_dispatcher(services, console)
    try:
        d.run_until_idle()
    finally:
        d.stop()
    assert [m["to"] for m in console.sent] == ["+6281200000001"]
    assert console.sent[0]["body"] == "BPBD LUTIM: Apel siaga banjir besok 07:30 di kantor camat - harap hadir"


def test_inbound_berhenti_with_a_valid_signature_opts_out_and_a_forged_one_changes_nothing(services, client):
    with services.engine.begin() as conn:
        subscribers.create(conn, {"phone": "0812-3456-7890", "areas": [{"kecamatan": "Malili", "desa": "Laskap"}]},
                           datetime.now(timezone.utc))
    path = "/webhooks/twilio/inbound"
    form = {"From": "+6281234567890", "To": "+15005550006", "Body": "berhenti", "MessageSid": "SMin1"}
    forged = client.post(path, data=form, headers=signed(path, form, token="wrong"))
    assert forged.status_code == 403 and subscriber(services, "+6281234567890").opted_out is False
    assert client.post(path, data=form).status_code == 403
    ok = client.post(path, data=form, headers=signed(path, form))
    assert ok.status_code == 200 and ok.mimetype == "text/xml"
    assert b"<Response><Message>BPBD LUTIM: Anda berhenti" in ok.data
    assert subscriber(services, "+6281234567890").opted_out is True
    again = {**form, "Body": "Mulai", "MessageSid": "SMin2"}
    assert b"kembali menerima" in client.post(path, data=again, headers=signed(path, again)).data
    assert subscriber(services, "+6281234567890").opted_out is False
    # Twilio retrying the first webhook changes nothing.
    assert client.post(path, data=form, headers=signed(path, form)).status_code == 200
    assert subscriber(services, "+6281234567890").opted_out is False


def test_daftar_registers_a_new_number_and_info_answers_the_level(services, client):
    path = "/webhooks/twilio/inbound"
    form = {"From": "+6285211112222", "Body": "DAFTAR laskap", "MessageSid": "SMreg"}
    answer = client.post(path, data=form, headers=signed(path, form))
    assert b"terdaftar untuk peringatan banjir Laskap" in answer.data
    person = subscriber(services, "+6285211112222")
    assert person.areas == [{"kecamatan": "Malili", "desa": "Laskap"}] and person.source == "sms"
    with services.engine.begin() as conn:
        now = datetime.now(timezone.utc)
        conn.execute(sa.delete(schema.station_state).where(schema.station_state.c.station_id == "PKR-LASKAP"))
        conn.execute(sa.insert(schema.station_state).values(station_id="PKR-LASKAP", level="siaga", latest={},
                                                            updated_at=now))
    info = {"From": "+6285211112222", "Body": "info", "MessageSid": "SMinfo"}
    assert b"Laskap SIAGA" in client.post(path, data=info, headers=signed(path, info)).data
    unknown = {"From": "+6285211113333", "Body": "DAFTAR Atlantis", "MessageSid": "SMx"}
    assert b"tidak dikenal" in client.post(path, data=unknown, headers=signed(path, unknown)).data
    assert subscriber(services, "+6285211113333") is None


def test_webhooks_are_off_without_an_auth_token(database_url):
    services = make_services(database_url)
    client = create_app(services).test_client()
    assert client.post("/webhooks/twilio/inbound", data={"Body": "STOP", "From": "+6281234567890"}).status_code == 404
    services.engine.dispose()


def test_signed_status_callbacks_from_the_fake_twilio_mark_messages_delivered(database_url, monkeypatch):
    monkeypatch.delenv("TWILIO_EDGE", raising=False)
    monkeypatch.delenv("TWILIO_REGION", raising=False)
    port = free_port()
    with FakeTwilio() as fake:
        services = make_services(database_url, **fake.env(public_url=f"http://127.0.0.1:{port}"),
                                 EWS_SMS_MAX_PER_SECOND="50")
        server = make_server("127.0.0.1", port, create_app(services), threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        fake.auto_callbacks = ["sent", "delivered"]
        d = sms_dispatcher(services, make_provider(services.settings, services.metrics))
        try:
            with services.engine.begin() as conn:
                subscribers.create(conn, {"phone": "0812-3456-7890", "areas": [{"kecamatan": "Malili"}]},
                                   datetime.now(timezone.utc))
                conn.execute(sa.insert(schema.broadcasts).values(
                    created_at=datetime.now(timezone.utc), created_by="t", body="Tes sirine",
                    areas=[{"kecamatan": "Malili"}], roles=["resident"]))
            d.run_until_idle()
            deadline = time.monotonic() + 30
            while len(fake.callbacks) < 2 and time.monotonic() < deadline:
                time.sleep(0.02)
            fake.stop()  # joins the callback threads
            assert [status for _, _, status in fake.callbacks] == [204, 204]
            forged = fake.post_signed(fake.callbacks[0][0], {**fake.callbacks[0][1], "MessageStatus": "failed"},
                                      signature="forged")
            assert forged == 403
            with services.engine.connect() as conn:
                row = conn.execute(sa.select(schema.notifications)).one()
            assert row.status == "delivered" and row.provider_sid == fake.accepted()[0]["sid"]
        finally:
            d.stop()
            server.shutdown()
            services.engine.dispose()
