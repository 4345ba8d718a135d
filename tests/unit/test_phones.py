"""Phone numbers: every form people type becomes E.164; logs see a masked number."""

from __future__ import annotations

import pytest

from service.phones import InvalidPhone, mask, mask_numbers, normalise

FORMS = [
    "081234567890", "0812-3456-7890", "0812 3456 7890", "(0812) 3456-7890", "0812.3456.7890",
    "6281234567890", "62 812 3456 7890", "+62 812-3456-7890", "+62 812 3456 7890", "+6281234567890",
    "+62 0812 3456 7890", "620812-3456-7890", "+62 (0)812 3456 7890", "81234567890", "006281234567890",
    " 0812\u00a03456\u20137890 ",
]


@pytest.mark.parametrize("raw", FORMS)
def test_every_typed_form_is_the_same_e164_number(raw):
    assert normalise(raw) == "+6281234567890"


@pytest.mark.parametrize("raw,e164", [("0852 5512 3456", "+6285255123456"), ("0811-420-1234", "+628114201234"),
                                      ("0411 123456", "+62411123456"), ("+1 415 555 2671", "+14155552671")])
def test_other_valid_numbers(raw, e164):
    assert normalise(raw) == e164


@pytest.mark.parametrize("raw", ["", "  ", "12345", "0812-abc-7890", "+62 812", "0000000000", "1" * 41, None])
def test_invalid_numbers_are_refused_with_a_reason(raw):
    with pytest.raises(InvalidPhone) as info:
        normalise(raw)
    assert str(info.value)


def test_landlines_can_be_refused_where_only_mobiles_make_sense():
    with pytest.raises(InvalidPhone):
        normalise("0411 123456", mobile_only=True)


def test_mask():
    assert mask("+6281234567890") == "+62812****7890"
    assert mask("+628114201234") == "+62811***1234"
    assert mask(None) == "-"
    assert "3456" not in mask("+6281234567890")[:-4]


@pytest.mark.parametrize("text, expected", [
    ("The 'To' number +6281234567890 is not a valid phone number.",
     "The 'To' number +62812****7890 is not a valid phone number."),
    ("Attempt to send to unsubscribed recipient 0812-3456-7890", "Attempt to send to unsubscribed recipient 08123***7890"),
    ("to +62 812 3456 7890 and (0812) 3456-7891", "to +62812****7890 and 08123***7891"),
    # Not phone numbers: error codes, message sids, short counts, times.
    ("21211 SM0123456789abcdef0123456789abcdef 1234567 at 2026-11-30T06:05:00Z",
     "21211 SM0123456789abcdef0123456789abcdef 1234567 at 2026-11-30T06:05:00Z"),
])
def test_mask_numbers_masks_every_number_in_a_text(text, expected):
    assert mask_numbers(text) == expected


def test_mask_numbers_keeps_empty_texts():
    assert mask_numbers(None) is None and mask_numbers("") == ""
