"""One reading of a Mexican phone number for every place that takes one in, and one mask for
every place that shows one.

Accepted: the 10-digit national number, alone or after ``+52``, ``52`` or ``0052``; the old
mobile forms (``+52 1``, ``521``, ``00521`` before the 10 digits) and the old mobile prefixes
``044``/``045``; with spaces, dashes, dots and parentheses anywhere. Everything else raises
``PhoneRejected``, whose reason never repeats the input's digits.
"""

import phonenumbers

MEXICO = "52"
NATIONAL_DIGITS = 10
LONGEST_NUMBER = 15
"""Digits of the longest E.164 number, country code included (ITU-T E.164)."""
OLD_MOBILE_PREFIXES = ("044", "045")
SEPARATORS = frozenset(" -.()")
COUNTRY_CODES = frozenset(str(code) for code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE)


class PhoneRejected(ValueError):
    """The text is no Mexican phone number; the message says why, never with its digits."""


def _digits(text: str) -> tuple[bool, str]:
    """Whether the text starts with ``+``, and its digits; refuses any other character."""
    text = text.strip()
    if not text:
        raise PhoneRejected("not a phone number: empty")
    if any(c.isalpha() for c in text):
        raise PhoneRejected("not a phone number: contains letters")
    plus = text.startswith("+")
    body = text[1:] if plus else text
    if "+" in body:
        raise PhoneRejected("not a phone number: a + may only come first")
    if any(not (c in "0123456789" or c in SEPARATORS or c.isspace()) for c in body):
        raise PhoneRejected(
            "not a phone number: contains characters other than digits, spaces and + - . ( )"
        )
    digits = "".join(c for c in body if c in "0123456789")
    if not digits:
        raise PhoneRejected("not a phone number: no digits")
    return plus, digits


def _not_mexico(number: str) -> str:
    """Why an international number that does not start with 52 is refused: its country code
    (country codes are prefix-free: at most one of its first three prefixes is one)."""
    for code in (number[:1], number[:2], number[:3]):
        if code in COUNTRY_CODES:
            return f"not a Mexican number: country code {code} is not Mexico (+{MEXICO})"
    return "not a phone number: no country has this code"


def _national(plus: bool, digits: str) -> str:
    """The 10-digit national number, the country code and old mobile prefixes taken off."""
    international = plus or digits.startswith("00")
    number = digits[2:] if international and not plus else digits
    if len(number) > LONGEST_NUMBER:
        raise PhoneRejected(
            f"not a phone number: {len(number)} digits, longer than any phone number"
        )
    if international:
        if not number.startswith(MEXICO):
            raise PhoneRejected(_not_mexico(number))
        number = number[len(MEXICO) :]
        if len(number) == NATIONAL_DIGITS + 1 and number.startswith("1"):
            number = number[1:]
        if len(number) != NATIONAL_DIGITS:
            raise PhoneRejected(
                f"not a Mexican number: {len(number)} digits after "
                f"+{MEXICO}, expected {NATIONAL_DIGITS}"
            )
        return number
    if len(number) == NATIONAL_DIGITS + 3 and number.startswith(
        (*OLD_MOBILE_PREFIXES, MEXICO + "1")
    ):
        return number[3:]
    if len(number) == NATIONAL_DIGITS + 2 and number.startswith(MEXICO):
        return number[2:]
    if len(number) != NATIONAL_DIGITS:
        raise PhoneRejected(
            f"not a Mexican number: {len(number)} digits, expected "
            f"{NATIONAL_DIGITS} (alone or after +52, 52, 0052, 521, 044 or 045)"
        )
    return number


def normalize_phone(text: str) -> str:
    """A Mexican phone number in any accepted form (see the module) as E.164 ``+52`` and 10
    digits; ``PhoneRejected`` with the reason otherwise."""
    if not isinstance(text, str):
        raise PhoneRejected("not a phone number: not text")
    return f"+{MEXICO}{_national(*_digits(text))}"


def mask_phone(phone: str | None) -> str | None:
    """``+52 *** *** 4567``: the country code and the last four digits, the rest hidden (None
    for no phone)."""
    if not phone:
        return None
    return f"{phone[:3]} *** *** {phone[-4:]}"
