"""The operator's side of the dashboard (spec section 10) in real headless Chromium, end to end:
click -> staff API -> database and audit log -> what the page shows after a reload. Bahasa
Indonesia first; the API's refusals (403, 409, 422) said in plain words; a viewer cannot act
and the public view has no controls at all."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from service import alert_control
from service.db import schema
from tests.browser.page import click, displayed, open_page, page_errors, read, text, token_for, wait

pytestmark = pytest.mark.browser


def card(driver, alert_id):
    found = driver.find_elements("css selector", f'#alerts .alert[data-alert-id="{alert_id}"]')
    return found[0] if found else None


def notice(driver) -> str:
    """The notice line's text once it shows."""
    wait(driver, lambda d: d.find_element("id", "notice").is_displayed(), message="no notice")
    return driver.find_element("id", "notice").text


def alert_row(services, alert_id):
    with services.engine.connect() as conn:
        return conn.execute(sa.select(schema.alerts).where(schema.alerts.c.id == alert_id)).one()


def audit_rows(services, entity, action):
    a = schema.audit_log
    with services.engine.connect() as conn:
        return conn.execute(sa.select(a).where(a.c.entity == entity, a.c.action == action).order_by(a.c.id)).all()


def reload(driver, live):
    """A fresh load of the page (the token stays in the tab's sessionStorage)."""
    driver.refresh()
    wait(driver, lambda d: d.execute_script("return !!(window.EWS && window.EWS.state.loaded && window.EWS.state.session)"),
         message="the page did not load again as staff")


def as_staff(driver, live, services, name, role="operator", shows=None, poll=None):
    """Open the page with a new ``role`` token named ``name``; wait until it shows ``shows`` (a selector)."""
    open_page(driver, live, ("?poll=%d&" % poll if poll else "?") + f"token={token_for(services, role, name)}")
    if shows:
        wait(driver, lambda d: d.find_elements("css selector", shows), message=f"the page never showed {shows}")


def press(driver, selector, dialog):
    """Click the button ``selector`` once the page shows it; wait for ``dialog`` to open."""
    click(driver, selector)
    wait(driver, lambda d: d.find_element("id", dialog).is_displayed(), message=f"{dialog} did not open")


def test_operator_closes_an_alert_only_with_a_reason(browser, live, flood):
    services, alert_ids = flood
    target = alert_ids["PKR-LASKAP"]
    open_page(browser, live, f"?token={token_for(services, 'operator', 'Piket Operator')}")
    press(browser, f'[data-close="{target}"]', "close-dialog")
    assert "Pos TMA Pongkeru Laskap" in browser.find_element("id", "close-title").text
    # No reason: the page says why it cannot close, and nothing reaches the server.
    browser.find_element("id", "close-send").click()
    error = browser.find_element("id", "close-error")
    wait(browser, lambda d: error.is_displayed(), message="no word about the missing reason")
    assert error.text.startswith("Tulis alasannya dulu. Peringatan tidak dapat ditutup tanpa alasan")
    assert browser.find_element("id", "close-dialog").is_displayed()
    assert alert_row(services, target).state == "active"

    browser.find_element("id", "close-reason").send_keys("Sensor macet, dicek TRC di lokasi")
    browser.find_element("id", "close-send").click()
    assert notice(browser) == f"Peringatan #{target} ditutup. Warga tidak diberi kabar aman."
    wait(browser, lambda d: card(d, target) is None, message="the closed alert is still listed")

    row = alert_row(services, target)
    assert row.state == "closed"
    with services.engine.connect() as conn:
        closed = conn.execute(sa.select(schema.alert_events).where(
            schema.alert_events.c.alert_id == target, schema.alert_events.c.type == "closed")).one()
    assert "Piket Operator" in closed.by and closed.note == "Sensor macet, dicek TRC di lokasi"
    assert closed.dispatch == "none"  # no all-clear to residents unless asked
    (entry,) = audit_rows(services, "alert", "close")
    assert "Piket Operator" in entry.actor and entry.entity_id == str(target)
    assert entry.after["reason"] == "Sensor macet, dicek TRC di lokasi" and entry.after["all_clear"] is False

    reload(browser, live)
    assert card(browser, target) is None
    closed_line = text(browser, f'.closed-alerts li[data-alert-id="{target}"]')
    assert "Pos TMA Pongkeru Laskap" in closed_line
    assert "ditutup oleh Piket Operator" in closed_line and "“Sensor macet, dicek TRC di lokasi”" in closed_line
    assert page_errors(browser) == []


def test_closing_with_the_all_clear_tells_residents(browser, live, flood):
    services, alert_ids = flood
    target = alert_ids["MLL-MALILI"]
    open_page(browser, live, f"?token={token_for(services, 'admin', 'Kepala Pusdalops')}")
    press(browser, f'[data-close="{target}"]', "close-dialog")
    browser.find_element("id", "close-reason").send_keys("Air sudah surut, dicek langsung")
    browser.find_element("id", "close-all-clear").click()
    browser.find_element("id", "close-send").click()
    assert notice(browser).endswith("Kabar aman dikirim ke warga yang sudah diperingatkan.")
    with services.engine.connect() as conn:
        closed = conn.execute(sa.select(schema.alert_events).where(
            schema.alert_events.c.alert_id == target, schema.alert_events.c.type == "closed")).one()
    assert closed.dispatch == "pending" and closed.reading == {"all_clear": True}
    assert audit_rows(services, "alert", "close")[0].after["all_clear"] is True


def test_an_alert_closed_meanwhile_is_said_in_plain_words(browser, live, flood):
    """409: another officer closed it after this page last polled."""
    services, alert_ids = flood
    target = alert_ids["ARR-PONGKERU"]
    as_staff(browser, live, services, "Piket Operator", shows=f'[data-close="{target}"]', poll=60)
    with services.engine.begin() as conn:
        alert_control.close(conn, target, "Piket Lain", "sudah ditangani", datetime.now(timezone.utc))
    press(browser, f'[data-close="{target}"]', "close-dialog")
    browser.find_element("id", "close-reason").send_keys("hujan reda")
    browser.find_element("id", "close-send").click()
    assert notice(browser) == (f"Peringatan #{target} tidak ditutup: peringatan ini sudah ditutup sebelumnya "
                               "(oleh petugas lain atau karena sudah selesai).")
    assert "error" in browser.find_element("id", "notice").get_attribute("class")
    wait(browser, lambda d: card(d, target) is None, message="the page did not refresh after the refusal")
    assert audit_rows(services, "alert", "close") == []  # the refusal changed nothing


def test_acknowledging_twice_is_said_in_plain_words(browser, live, flood):
    services, alert_ids = flood
    target = alert_ids["MLL-MALILI"]
    as_staff(browser, live, services, "Piket Operator", shows=f'[data-ack="{target}"]', poll=60)
    with services.engine.begin() as conn:
        conn.execute(sa.update(schema.alerts).where(schema.alerts.c.id == target).values(
            ack_by="Piket Lain", ack_at=datetime.now(timezone.utc)))
    press(browser, f'[data-ack="{target}"]', "ack-dialog")
    browser.find_element("id", "ack-send").click()
    assert notice(browser) == (f"Gagal menandai peringatan #{target}: peringatan ini sudah ditandai diketahui "
                               "sebelumnya (oleh petugas lain).")


def test_a_viewer_cannot_act_and_a_token_downgraded_meanwhile_is_refused_in_plain_words(browser, live, flood):
    services, alert_ids = flood
    target = alert_ids["PKR-LASKAP"]
    open_page(browser, live, f"?token={token_for(services, 'viewer', 'Layar COC')}")
    wait(browser, lambda d: d.find_element("id", "ops").is_displayed(), message="no staff panel for the viewer")
    show_panel(browser)
    assert displayed(browser, "#ops-queue")
    assert card(browser, target) is not None
    for selector in ("[data-close]", "[data-ack]", "#mnt-open", "[data-mnt-end]"):
        assert not browser.find_elements("css selector", selector), selector

    # An operator's page whose token an admin turns into a viewer's: the API says 403, the page says why.
    browser.execute_script("sessionStorage.clear();")
    token = token_for(services, "operator", "Piket Sore")
    open_page(browser, live, f"?poll=60&token={token}")
    wait(browser, lambda d: d.find_elements("css selector", f'[data-close="{target}"]'), message="no close button")
    with services.engine.begin() as conn:
        conn.execute(sa.update(schema.api_tokens).where(schema.api_tokens.c.name == "Piket Sore").values(role="viewer"))
    press(browser, f'[data-close="{target}"]', "close-dialog")
    browser.find_element("id", "close-reason").send_keys("coba tutup")
    browser.find_element("id", "close-send").click()
    assert notice(browser) == (f"Peringatan #{target} tidak ditutup: token Anda tidak berhak melakukan ini (token "
                               "pemantau hanya untuk melihat). Masuk dengan token operator atau admin.")
    assert alert_row(services, target).state == "active"
    assert audit_rows(services, "alert", "close") == []
    # The page refreshed with the new role: the buttons are gone.
    wait(browser, lambda d: not d.find_elements("css selector", "[data-close]"), message="the buttons stayed")


def test_the_public_view_has_no_operator_controls_but_sees_the_maintenance(browser, live, flood):
    from service import maintenance

    services, alert_ids = flood
    now = datetime.now(timezone.utc)
    with services.engine.begin() as conn:
        maintenance.create(conn, "PKR-LASKAP", now, now + timedelta(hours=3), "Ganti kabel sensor", "Teknisi", now)
    open_page(browser, live)
    assert not browser.find_element("id", "ops").is_displayed()
    for selector in ("[data-close]", "[data-ack]", "#mnt-open", "#ops-queue", "#ops-suppressed"):
        assert not browser.find_elements("css selector", selector), selector
    # Everyone sees that the station tells residents nothing until when; the reason is for staff.
    badge = '#stations tr[data-station="PKR-LASKAP"] .badge.maintenance'
    assert text(browser, badge) == "PEMELIHARAAN"
    assert "warga tidak menerima SMS dari pos ini" in browser.execute_script(
        "return document.querySelector(arguments[0]).title", badge)
    line = text(browser, f'#alerts .alert[data-alert-id="{alert_ids["PKR-LASKAP"]}"] .alert-mnt')
    assert line.startswith("PEMELIHARAAN sampai ") and "warga tidak menerima SMS dari peringatan ini" in line
    assert "Ganti kabel sensor" not in browser.find_element("tag name", "body").text
    assert text(browser, f'#alerts .alert[data-alert-id="{alert_ids["MLL-MALILI"]}"] .alert-mnt') is None


def test_english_second(browser, live, flood):
    services, alert_ids = flood
    target = alert_ids["PKR-LASKAP"]
    open_page(browser, live, f"?token={token_for(services, 'operator', 'Piket Operator')}")
    browser.find_element("id", "lang-button").click()
    wait(browser, lambda d: d.find_elements("css selector", f'[data-close="{target}"]'), message="no close button")
    assert text(browser, f'[data-close="{target}"]') == "Close"
    press(browser, f'[data-close="{target}"]', "close-dialog")
    browser.find_element("id", "close-send").click()
    error = browser.find_element("id", "close-error")
    wait(browser, lambda d: error.is_displayed())
    assert error.text.startswith("Write the reason first. An alert cannot be closed without one")


def maintenance_rows(services):
    with services.engine.connect() as conn:
        return conn.execute(sa.select(schema.maintenance_windows).order_by(schema.maintenance_windows.c.id)).all()


def show_panel(driver):
    """Unfold the staff panel (folded by default; the page remembers it unfolded in this browser)."""
    wait(driver, lambda d: d.find_elements("id", "ops-summary"), message="no staff panel")
    if not driver.execute_script("return document.getElementById('ops-details').open"):
        click(driver, "#ops-summary")
    wait(driver, lambda d: displayed(d, "#ops-maintenance"), message="the panel did not unfold")


def open_maintenance_dialog(driver, station_id, duration_h):
    from selenium.webdriver.support.ui import Select

    show_panel(driver)
    click(driver, "#mnt-open")
    wait(driver, lambda d: d.find_element("id", "mnt-dialog").is_displayed())
    Select(driver.find_element("id", "mnt-station")).select_by_value(station_id)
    Select(driver.find_element("id", "mnt-duration")).select_by_value(str(duration_h))


def test_operator_starts_and_ends_a_maintenance_window(browser, live, flood):
    services, _ = flood
    open_page(browser, live, f"?token={token_for(services, 'operator', 'Teknisi BPBD')}")
    open_maintenance_dialog(browser, "KLN-WOTU", 2)
    assert "(dalam 2 j 0 mnt). Paling lama 7 hari." in browser.find_element("id", "mnt-until-text").text
    browser.find_element("id", "mnt-send").click()  # no reason yet
    error = browser.find_element("id", "mnt-error")
    wait(browser, lambda d: error.is_displayed(), message="no word about the missing reason")
    assert error.text.startswith("Tulis alasannya dulu (misalnya kalibrasi sensor)")
    assert maintenance_rows(services) == []
    browser.find_element("id", "mnt-reason").send_keys("Kalibrasi sensor tekanan")
    started = datetime.now(timezone.utc)
    browser.find_element("id", "mnt-send").click()
    assert notice(browser).startswith("Pemeliharaan Pos TMA Kalaena Wotu dimulai, sampai ")

    (window,) = maintenance_rows(services)
    assert window.station_id == "KLN-WOTU" and window.reason == "Kalibrasi sensor tekanan"
    assert "Teknisi BPBD" in window.created_by
    ends_at = window.ends_at.replace(tzinfo=timezone.utc) if window.ends_at.tzinfo is None else window.ends_at
    # The dialog's "until" has minutes: two hours from now, to the minute (WITA on screen, UTC stored).
    assert abs((ends_at - started) - timedelta(hours=2)) < timedelta(minutes=2)
    (entry,) = audit_rows(services, "maintenance", "create")
    assert "Teknisi BPBD" in entry.actor and entry.entity_id == str(window.id)

    reload(browser, live)
    row = f'#ops-maintenance [data-maintenance-id="{window.id}"]'
    wait(browser, lambda d: d.find_elements("css selector", row), message="the window is not listed")
    listed = text(browser, row)
    assert "Pos TMA Kalaena Wotu" in listed and "Kalibrasi sensor tekanan" in listed and "Teknisi BPBD" in listed
    # Unfolded after the reload too, and its summary line counts the window.
    assert text(browser, "#ops-summary").startswith("Kendali petugas: 1 pos dalam pemeliharaan")
    assert text(browser, '#stations tr[data-station="KLN-WOTU"] .badge.maintenance') == "PEMELIHARAAN"

    click(browser, f'[data-mnt-end="{window.id}"]')
    wait(browser, lambda d: d.find_element("id", "mnt-end-dialog").is_displayed())
    assert "diumumkan lagi ke warga" in browser.find_element("id", "mnt-end-dialog").text
    browser.find_element("id", "mnt-end-send").click()
    assert notice(browser) == "Pemeliharaan Pos TMA Kalaena Wotu diakhiri."
    (window,) = maintenance_rows(services)
    assert "Teknisi BPBD" in window.ended_by
    (entry,) = audit_rows(services, "maintenance", "end")
    assert "Teknisi BPBD" in entry.actor

    reload(browser, live)
    assert not browser.find_elements("css selector", row)
    assert not browser.find_elements("css selector", "#stations .badge.maintenance")
    assert text(browser, "#ops-maintenance").endswith("Tidak ada pos dalam pemeliharaan. Mulai pemeliharaan")
    assert page_errors(browser) == []


def test_a_window_too_long_is_refused_in_plain_words(browser, live, flood):
    """422 naming `until`: the page says what is wrong with it, and the dialog stays open to fix it."""
    services, _ = flood
    open_page(browser, live, f"?token={token_for(services, 'operator', 'Teknisi BPBD')}")
    open_maintenance_dialog(browser, "KLN-WOTU", 168)
    later = browser.execute_script(
        "return window.EWS.operator.wallText(new Date(Date.now() + 8 * 24 * 3600 * 1000));")
    browser.execute_script("var el = document.getElementById('mnt-until'); el.value = arguments[0];"
                           " el.dispatchEvent(new Event('input'));", later)
    browser.find_element("id", "mnt-reason").send_keys("Ganti panel surya")
    browser.find_element("id", "mnt-send").click()
    error = browser.find_element("id", "mnt-error")
    wait(browser, lambda d: error.is_displayed(), message="no word about the refusal")
    assert error.text == "waktu selesai harus sesudah sekarang dan paling lama 7 hari dari mulai."
    assert browser.find_element("id", "mnt-dialog").is_displayed()
    assert maintenance_rows(services) == []


def test_a_window_already_ended_is_said_in_plain_words(browser, live, flood):
    from service import maintenance

    services, _ = flood
    now = datetime.now(timezone.utc)
    with services.engine.begin() as conn:
        window = maintenance.create(conn, "LRN-PARUMPANAI", now, now + timedelta(hours=3), "perbaikan", "Teknisi", now)
    open_page(browser, live, f"?poll=60&token={token_for(services, 'operator', 'Teknisi BPBD')}")
    show_panel(browser)
    with services.engine.begin() as conn:
        maintenance.end(conn, window["id"], "Teknisi Lain", datetime.now(timezone.utc))
    click(browser, f'[data-mnt-end="{window["id"]}"]')
    wait(browser, lambda d: d.find_element("id", "mnt-end-dialog").is_displayed())
    browser.find_element("id", "mnt-end-send").click()
    assert notice(browser) == "Pemeliharaan Pos TMA Larona Parumpanai tidak diakhiri: pemeliharaan ini sudah berakhir."


def test_staff_see_what_maintenance_held_back_and_the_queue_urgent_first(browser, live, flood):
    """A window started from the page; the river rises at SIAGA: residents are told nothing (held back, shown),
    staff's marked warnings wait in the queue above an older broadcast."""
    import json

    from service.bootstrap import sms_dispatcher
    from service.dispatch import ConsoleProvider
    from service.ingest import Message
    from tests.support.services import without_spike_check

    services, _ = flood
    without_spike_check(services.engine, "KLN-WOTU")
    now = datetime.now(timezone.utc)
    with services.engine.begin() as conn:  # an older broadcast still queued (priority 5)
        conn.execute(sa.insert(schema.notifications), [
            {"phone": "+6281200000000", "language": "id", "kind": "broadcast", "body": "-", "status": "pending",
             "priority": 5, "created_at": now - timedelta(minutes=3), "updated_at": now} for _ in range(7)])
    open_page(browser, live, f"?token={token_for(services, 'operator', 'Teknisi BPBD')}")
    open_maintenance_dialog(browser, "KLN-WOTU", 4)
    browser.find_element("id", "mnt-reason").send_keys("Perbaikan kabel sensor")
    browser.find_element("id", "mnt-send").click()
    notice(browser)

    reading = json.dumps({"ts": datetime.now(timezone.utc).isoformat(), "values": {"water_level": 3.6}}).encode()
    (result,) = services.ingestor.ingest([Message("ews/v1/stations/KLN-WOTU/readings", reading, datetime.now(timezone.utc))])
    assert not result.rejected
    with open("/dev/null", "w") as sink:
        sms_dispatcher(services, ConsoleProvider(stream=sink)).expand()
    n = schema.notifications
    with services.engine.connect() as conn:
        staff_warnings = conn.execute(sa.select(sa.func.count()).where(n.c.status == "pending", n.c.priority == 1)).scalar()
    assert staff_warnings == 4  # the flood's four staff, marked as under maintenance; no resident of Wotu

    reload(browser, live)
    wait(browser, lambda d: d.find_elements("css selector", "#ops-suppressed [data-suppressed-event]"),
         message="nothing shown as held back")
    assert text(browser, "#supp-count") == "(1)"
    held = text(browser, "#ops-suppressed [data-suppressed-event]")
    assert "Pos TMA Kalaena Wotu" in held and "peringatan (mulai) tidak dikirim ke warga" in held
    assert "1 pesan ditahan" in text(browser, '#ops-maintenance [data-station="KLN-WOTU"]')
    assert "petugas tetap menerima SIAGA dan AWAS" in text(browser, '#alerts .alert[data-station="KLN-WOTU"] .alert-mnt')

    assert text(browser, "#queue-total") == "(11)"
    # The flood's messages `sent` to the provider are not yet delivered, but no longer queued: not in these 11.
    assert "belum sampai 4" in text(browser, '#alerts .alert[data-station="PKR-LASKAP"] .alert-sms')
    rows = read(browser, "#ops-queue tr[data-priority]", "data-priority", "class")
    assert [r["data-priority"] for r in rows] == [str(p) for p in range(8)]  # urgent first
    assert rows[1]["text"].startswith("Peringatan SIAGA 4 tertua ")
    assert rows[5]["text"] == "Siaran 7 tertua 3 mnt lalu"
    assert rows[0]["class"] == "zero" and rows[1]["class"] == ""
    assert page_errors(browser) == []
