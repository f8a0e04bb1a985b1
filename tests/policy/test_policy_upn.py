"""UPN check letter and validation (docs/guidance.md, Identifiers)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policy import UPN_ALPHABET, is_valid_upn, upn_check_letter, upn_problem

DIGITS = "0123456789"

bodies = st.builds(
    lambda head, last: head + last,
    st.text(alphabet=DIGITS, min_size=11, max_size=11),
    st.sampled_from(DIGITS + UPN_ALPHABET),
)


@pytest.mark.parametrize(
    ("body", "letter"),
    [
        ("801200001001", "H"),
        ("80120000101A", "G"),
        ("80120000101a", "G"),
        (" 801200001001 ", "H"),
    ],
)
def test_check_letter_matches_domain_examples(body: str, letter: str) -> None:
    assert upn_check_letter(body) == letter


@pytest.mark.parametrize(
    "body",
    [
        "",
        "80120000100",
        "8012000010011",
        "8012000010A1",
        "80120000100I",
        "80120000100O",
        "80120000100S",
        "A01200001001",
    ],
)
def test_check_letter_rejects_malformed_body(body: str) -> None:
    with pytest.raises(ValueError, match="UPN"):
        upn_check_letter(body)


@pytest.mark.parametrize(
    "value",
    ["H801200001001", "G80120000101A", "h801200001001", "  g80120000101a\n"],
)
def test_valid_permanent_and_temporary_upns(value: str) -> None:
    assert is_valid_upn(value)
    assert upn_problem(value) is None


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("", "13 characters"),
        ("H80120000100", "13 characters"),
        ("H8012000010011", "13 characters"),
        ("I801200001001", "check letter other than I, O or S"),
        ("1801200001001", "check letter other than I, O or S"),
        ("H8012000010A1", "characters 2-12 must be digits"),
        ("H80120000100I", "character 13"),
        ("H80120000100-", "character 13"),
        ("A801200001001", "check letter does not match"),
        ("H801200001002", "check letter does not match"),
        ("G80120000101B", "check letter does not match"),
    ],
)
def test_invalid_upns_say_why_without_echoing_the_value(value: str, problem: str) -> None:
    assert not is_valid_upn(value)
    reason = upn_problem(value)
    assert reason is not None and problem in reason
    if len(value.strip()) >= 4:
        assert value.strip() not in reason


def test_a_letter_in_position_13_uses_its_zero_based_index() -> None:
    # A (index 0) weighs like the digit 0, so the check letter is the same.
    assert upn_check_letter("801200001010") == upn_check_letter("80120000101A")


def test_no_fixed_list_of_la_codes() -> None:
    body = "999" + "1234" + "25" + "001"
    assert is_valid_upn(upn_check_letter(body) + body)


@given(bodies)
def test_every_upn_built_with_the_check_letter_is_valid(body: str) -> None:
    assert is_valid_upn(upn_check_letter(body) + body)


@given(bodies, st.data())
def test_changing_any_one_digit_makes_a_upn_invalid(body: str, data: st.DataObject) -> None:
    upn = upn_check_letter(body) + body
    positions = [i for i, c in enumerate(upn) if c in DIGITS]
    i = data.draw(st.sampled_from(positions))
    new = data.draw(st.sampled_from([d for d in DIGITS if d != upn[i]]))
    assert not is_valid_upn(upn[:i] + new + upn[i + 1 :])


@given(bodies, st.data())
def test_changing_the_check_letter_makes_a_upn_invalid(body: str, data: st.DataObject) -> None:
    letter = upn_check_letter(body)
    other = data.draw(st.sampled_from([c for c in UPN_ALPHABET if c != letter]))
    assert not is_valid_upn(other + body)
