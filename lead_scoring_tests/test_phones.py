"""The one phone normaliser and mask: every accepted form of a Mexican number gives the same
E.164, every refusal says why without the number's digits, the mask hides the number."""

import re

import phonenumbers
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lead_scoring_assets.contacts.phones import PhoneRejected, mask_phone, normalize_phone

SEVEN_DIGITS = re.compile(r"\d{7}")
PREFIXES = ("", "+52", "52", "0052", "+52 1", "521", "00521", "044", "045")
"""Every accepted form: what may stand before the 10-digit national number."""


def _valid_mexican(national: str) -> bool:
    return phonenumbers.is_valid_number(phonenumbers.parse(f"+52{national}"))


mexican_numbers = st.from_regex(r"[2-9][0-9]{9}", fullmatch=True).filter(_valid_mexican)
separators = st.sampled_from(["", " ", "  ", "-", ".", " - ", ". "])


@st.composite
def written(draw, national: str, prefix: str) -> str:
    """The number as a person may type it: the prefix, then the national number cut into
    groups (the first possibly in parentheses), random separators between the parts."""
    cuts = sorted(
        draw(st.sets(st.integers(1, max(1, len(national) - 1)), max_size=4)) - {len(national)}
    )
    groups = [national[a:b] for a, b in zip([0, *cuts], [*cuts, len(national)])]
    if draw(st.booleans()):
        groups[0] = f"({groups[0]})"
    parts = [*prefix.split(), *groups]
    text = parts[0]
    for part in parts[1:]:
        text += draw(separators) + part
    return draw(st.sampled_from(["", " "])) + text + draw(st.sampled_from(["", " "]))


@given(st.data(), mexican_numbers)
def test_every_form_of_a_mexican_number_gives_the_same_e164(data, national):
    for prefix in PREFIXES:
        text = data.draw(written(national, prefix), label=prefix or "national")
        assert normalize_phone(text) == f"+52{national}", text


@given(st.from_regex(r"[1-9][0-9]{9}", fullmatch=True))
def test_the_e164_form_is_what_phonenumbers_formats(national):
    """The normaliser writes ``+52`` and the 10 digits itself (phonenumbers' parse and format
    round trip was 85 % of a 1M-line import); phonenumbers gives the same text for any 10
    digits not starting with 0 (those read as an international ``00`` prefix)."""
    parsed = phonenumbers.parse(f"+52{national}")
    assert normalize_phone(national) == phonenumbers.format_number(
        parsed, phonenumbers.PhoneNumberFormat.E164
    )


@pytest.mark.parametrize(
    "text",
    [
        "+52 1 427 118 5601",
        "+5214271185601",
        "521 427 118 5601",
        "00521 427 118 5601",
        "044 427 118 5601",
        "045 (427) 118-5601",
        "0052 427.118.5601",
        "52 427 118 5601",
        "(427) 118-5601",
        "427 118 5601",
    ],
)
def test_the_readme_forms(text):
    assert normalize_phone(text) == "+524271185601"


@given(mexican_numbers)
def test_the_mask_never_shows_the_number(national):
    phone = f"+52{national}"
    masked = mask_phone(phone)
    assert masked == f"+52 *** *** {national[-4:]}"
    assert phone not in masked and national not in masked
    assert len(re.sub(r"\D", "", masked)) == 6


def test_no_phone_masks_to_none():
    assert mask_phone(None) is None and mask_phone("") is None


def _refused(text: str) -> str:
    with pytest.raises(PhoneRejected) as raised:
        normalize_phone(text)
    reason = str(raised.value)
    assert reason and not SEVEN_DIGITS.search(reason), reason
    digits = re.sub(r"\D", "", text)
    assert len(digits) < 7 or digits not in reason
    return reason


wrong_lengths = st.integers(1, 9) | st.just(11) | st.integers(16, 30)


@given(st.data(), wrong_lengths)
def test_a_wrong_length_is_refused_with_the_count_not_the_digits(data, length):
    digits = data.draw(st.from_regex(rf"[1-9][0-9]{{{length - 1}}}", fullmatch=True))
    reason = _refused(data.draw(written(digits, "")))
    assert f"{len(digits)} digits" in reason


@given(st.data(), st.integers(1, 9) | st.integers(11, 13))
def test_a_wrong_length_after_52_is_refused(data, length):
    digits = data.draw(st.from_regex(rf"[2-9][0-9]{{{length - 1}}}", fullmatch=True))
    for prefix in ("+52", "0052"):
        reason = _refused(data.draw(written(digits, prefix)))
        assert "digits" in reason and "expected 10" in reason


other_countries = st.sampled_from(
    sorted(c for c in phonenumbers.COUNTRY_CODE_TO_REGION_CODE if c != 52)
)


@given(st.data(), other_countries, st.from_regex(r"[0-9]{7,10}", fullmatch=True))
def test_another_country_is_refused_by_its_code(data, code, national):
    for prefix in (f"+{code}", f"00{code}"):
        reason = _refused(data.draw(written(national, prefix)))
        assert reason == f"not a Mexican number: country code {code} is not Mexico (+52)"


@given(st.data(), mexican_numbers, st.text(st.characters(categories=["L"]), min_size=1))
def test_letters_are_refused(data, national, letters):
    text = data.draw(written(national, "+52"))
    at = data.draw(st.integers(0, len(text)))
    assert _refused(text[:at] + letters + text[at:]) == "not a phone number: contains letters"


@pytest.mark.parametrize("text", ["", "   ", "\t"])
def test_empty_is_refused(text):
    assert _refused(text) == "not a phone number: empty"


@pytest.mark.parametrize(
    "text",
    [
        "427 118 5601 ext 2",
        "427/118/5601",
        "427+1185601",
        "+",
        "+999 427 118 5601",
        "12345678901234567890",
    ],
)
def test_other_refusals(text):
    _refused(text)


@given(st.text(max_size=40))
def test_any_text_is_a_mexican_e164_or_a_reason_without_its_digits(text):
    try:
        assert re.fullmatch(r"\+52[0-9]{10}", normalize_phone(text))
    except PhoneRejected:
        _refused(text)
