"""gammu-smsd's files backend formats: our outbox names sort as spec section 10 orders, contents round-trip."""

from __future__ import annotations

import locale
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alerts import priority
from service.dispatch import gammu_files as files

T0 = datetime(2026, 12, 1, 1, 2, 3, tzinfo=timezone.utc)


def test_the_name_carries_priority_time_id_and_number_in_gammus_layout():
    name = files.outbox_name(0, T0, 1234, "+6281211110001")
    assert name == "OUTA20261201_010203_000000001234_+6281211110001_ews.smsbackup"
    assert files.outbox_name(5, T0, 7, "+62812", "standard").endswith("_ews.txt")
    assert files.notification_id(name) == 1234
    # Gammu reads the number of a .txt file after the third underscore (smsd/services/files.c).
    assert files.outbox_name(0, T0, 1, "+6281211110001", "standard").split("_")[3] == "+6281211110001"


def test_other_peoples_files_and_temporary_files_are_not_ours():
    assert files.notification_id("OUTC20261201_095519_00_+6281234567890_sms0.smsbackup") is None  # gammu-smsd-inject
    assert files.notification_id(".ews-0f0f.tmp") is None
    assert files.TEMP_PREFIX.startswith(".") and not files.TEMP_PREFIX.upper().startswith("OUT")


def test_a_time_in_another_zone_is_written_in_utc():
    wita = timezone(timedelta(hours=8))
    assert files.outbox_name(1, T0.astimezone(wita), 1, "+62812") == files.outbox_name(1, T0, 1, "+62812")


def test_a_number_gammu_cannot_send_to_is_refused():
    with pytest.raises(ValueError, match="not a phone number"):
        files.outbox_name(0, T0, 1, "BPBD_LUTIM")


NOTIFICATIONS = st.lists(st.tuples(st.integers(0, priority.LOWEST), st.integers(0, 10**6),
                                   st.integers(1, 10**11)), min_size=2, max_size=30, unique_by=lambda t: t[2])


@given(NOTIFICATIONS)
def test_names_sort_by_priority_then_creation_then_id_in_any_collation(items):
    """The daemon picks the first name (alphasort uses strcoll): fixed widths keep the order in C and UTF-8 locales."""
    named = [(rank, T0 + timedelta(seconds=age), nid) for rank, age, nid in items]
    names = {files.outbox_name(rank, created, nid, "+6281211110001"): (rank, created, nid) for rank, created, nid in named}
    assert [names[n] for n in sorted(names)] == sorted(named)
    before = locale.setlocale(locale.LC_COLLATE)
    for collation in ("C.UTF-8", "en_US.UTF-8"):
        try:
            locale.setlocale(locale.LC_COLLATE, collation)
        except locale.Error:
            continue  # not installed here
        try:
            assert [names[n] for n in sorted(names, key=locale.strxfrm)] == sorted(named)
        finally:
            locale.setlocale(locale.LC_COLLATE, before)


@given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=200))
def test_both_formats_carry_the_text_exactly(text):
    for fmt in files.FORMATS:
        name = files.outbox_name(0, T0, 1, "+62812", fmt)
        number, back = files.read_outbox_content(files.outbox_content("+62812", text, fmt, T0), name)
        assert back == text and number in ("+62812", None)


def test_the_detail_format_is_what_gammu_smsd_inject_writes():
    content = files.outbox_content("+6281234567890", "BPBD LUTIM: AWAS", "detail", T0).decode()
    for line in ("[SMSBackup000]", "PDU = Submit", 'Number = "+6281234567890"', "Coding = Default_No_Compression",
                 "Text00 = 00420050004200440020004C005500540049004D003A00200041005700410053", "Length = 16"):
        assert line in content.splitlines()


def test_inbox_names_group_the_parts_of_one_message():
    first = files.inbox_part("IN20261201_083600_00_+6281234567890_00.txt")
    second = files.inbox_part("IN20261201_083600_00_+6281234567890_01.txt")
    assert first.key == second.key and (first.part, second.part) == (0, 1) and first.sender == "+6281234567890"
    assert files.inbox_part("IN20261201_083600_01_TELKOMSEL_00.txt").sender == "TELKOMSEL"
    assert files.inbox_part("handled") is None and files.inbox_part("OUTA.txt") is None


def test_inbox_texts_in_every_inbox_format():
    assert files.inbox_text("Daftar Laskap é".encode(), "txt") == "Daftar Laskap é"  # standard: UTF-8
    assert files.inbox_text(b"\xfe\xff" + "INFO".encode("utf-16-be"), "txt") == "INFO"  # unicode
    backup = files.outbox_content("+62812", "BERHENTI", "detail", T0)
    assert files.inbox_text(backup, "smsbackup") == "BERHENTI"  # detail
    assert files.inbox_text(b"\x00\x01", "bin") == ""
