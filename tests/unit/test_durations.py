"""Command-line durations carry their unit; anything ambiguous is refused with the accepted form."""

from __future__ import annotations

import pytest
import typer
from hypothesis import given
from hypothesis import strategies as st

from tomproto.durations import duration_option, format_duration, parse_duration

ACCEPTED_FORM = "e.g. 100ms, 2s, 5m or 1h"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("100ms", 0.1),
        ("2s", 2.0),
        ("1.5s", 1.5),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("0s", 0.0),
        ("0ms", 0.0),
        ("1.1ms", 0.0011),
        ("0.5m", 30.0),
        (".5s", 0.5),
        ("2.5h", 9000.0),
        (" 10s ", 10.0),
    ],
)
def test_durations_with_a_unit_are_read_in_seconds(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_a_bare_number_is_refused_with_the_message_the_spec_asks_for() -> None:
    with pytest.raises(ValueError) as caught:  # noqa: PT011 - the whole message is compared below
        parse_duration("100")
    assert str(caught.value) == f"invalid duration '100': give a unit, {ACCEPTED_FORM}"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("1.5", "give a unit"),
        ("0", "give a unit"),
        ("1d", "unknown unit 'd'"),
        ("2S", "unknown unit 'S'"),
        ("10sec", "unknown unit 'sec'"),
        ("-1s", "must not be negative"),
        ("-0.5ms", "must not be negative"),
        ("", "empty"),
        ("   ", "empty"),
        ("nan", "expected a number and a unit"),
        ("nans", "expected a number and a unit"),
        ("inf", "expected a number and a unit"),
        ("infs", "expected a number and a unit"),
        ("1e3s", "expected a number and a unit"),
        ("1 s", "expected a number and a unit"),
        ("s", "expected a number and a unit"),
        ("+2s", "expected a number and a unit"),
        ("1.s", "expected a number and a unit"),
        ("9" * 400 + "h", "too large"),
    ],
)
def test_bad_durations_are_refused_with_the_reason_and_the_accepted_form(text: str, reason: str) -> None:
    with pytest.raises(ValueError) as caught:  # noqa: PT011 - the message is checked below
        parse_duration(text)
    message = str(caught.value)
    assert message.startswith(f"invalid duration {text!r}: ")
    assert reason in message
    assert ACCEPTED_FORM in message


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.1, "100ms"),
        (2, "2s"),
        (300, "5m"),
        (3600, "1h"),
        (1.5, "1500ms"),
        (0, "0s"),
        (90, "90s"),
        (5400, "90m"),
        (7200.0, "2h"),
        (0.0025, "2.5ms"),
        (0.000001, "0.001ms"),
        (61.5, "61500ms"),
    ],
)
def test_format_duration_gives_the_shortest_exact_form(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("seconds", [-1.0, float("nan"), float("inf")])
def test_format_duration_refuses_what_is_not_a_duration(seconds: float) -> None:
    with pytest.raises(ValueError, match="finite number >= 0"):
        format_duration(seconds)


@given(st.integers(min_value=0, max_value=10**12))
def test_formatted_durations_read_back_to_the_microsecond(microseconds: int) -> None:
    seconds = microseconds / 1_000_000
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds, abs=1e-9, rel=1e-12)


def test_duration_option_turns_a_bad_duration_into_a_usage_error() -> None:
    assert duration_option("250ms") == 0.25
    with pytest.raises(typer.BadParameter) as caught:
        duration_option("100")
    assert caught.value.message == f"invalid duration '100': give a unit, {ACCEPTED_FORM}"


def test_a_typer_command_refuses_a_bare_number_with_exit_code_2() -> None:
    from typer.testing import CliRunner

    app = typer.Typer()
    received: list[float] = []

    @app.command()
    def run(interval: float = typer.Option(..., "--interval", parser=duration_option)) -> None:
        received.append(interval)

    runner = CliRunner()
    good = runner.invoke(app, ["--interval", "500ms"])
    assert good.exit_code == 0, good.output
    assert received == [0.5]

    bad = runner.invoke(app, ["--interval", "500"])
    assert bad.exit_code == 2
    assert "give a unit" in bad.output
