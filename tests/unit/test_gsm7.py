"""GSM-7: the sanitiser, septet counting and segments."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from alerts import gsm7


def test_typographic_characters_become_ascii_look_alikes():
    text = "\u201cAwas\u201d \u2013 air \u2018naik\u2019\u2026 suhu 28\u00b0C\u00a0di\u2014Wotu \U0001F30A\U0001F6A8"
    assert gsm7.sanitise(text) == "\"Awas\" - air 'naik'... suhu 28 derajat C di-Wotu"


def test_letters_of_the_table_stay_and_others_lose_their_accents():
    assert gsm7.sanitise("Pak D\u00e9 \u00e0 Sorowako") == "Pak D\u00e9 \u00e0 Sorowako"  # é and à are GSM-7
    assert gsm7.sanitise("caf\u00e1 cr\u00eape na\u00efve \u00e7a") == "cafa crepe naive ca"


def test_extension_characters_count_two_septets():
    assert gsm7.septets("a[b]c") == 7
    assert gsm7.septets("\u20ac5") == 3
    assert gsm7.is_gsm7("{x}|~^\\") and not gsm7.is_gsm7("\u2013")


def test_segments():
    assert gsm7.segments("a" * 160) == 1
    assert gsm7.segments("a" * 159 + "[") == 2
    assert gsm7.segments("a" * 306) == 2 and gsm7.segments("a" * 307) == 3


def test_truncate_keeps_one_segment():
    cut = gsm7.truncate("kata " * 60)
    assert gsm7.septets(cut) <= 160 and cut.endswith("...")
    assert gsm7.truncate("pendek") == "pendek"


@given(st.text(max_size=300))
def test_whatever_goes_in_only_gsm7_comes_out(text):
    assert gsm7.is_gsm7(gsm7.sanitise(text))
