"""Durations on the command line: always with a unit (spec/measurement.md §4).

A bare `100` could mean milliseconds or seconds, and the two differ by a factor of a thousand; the
public reference tool guessed, and users measured the wrong thing. So a duration is a non-negative
decimal number followed by one of `ms`, `s`, `m`, `h`, and anything else is refused with a message
that shows the accepted form.
"""

from __future__ import annotations

import math
import re

import typer

__all__ = ["parse_duration", "format_duration", "duration_option"]

ACCEPTED_FORM = "e.g. 100ms, 2s, 5m or 1h"

# Milliseconds divide by 1000 rather than multiply by 0.001: 1.1 / 1000 is 0.0011, 1.1 * 0.001 is not.
_UNIT_SCALE: dict[str, tuple[int, int]] = {"ms": (1, 1000), "s": (1, 1), "m": (60, 1), "h": (3600, 1)}

# Digits are spelled [0-9]: `\d` would also accept other scripts' digits, which float() then reads.
_DURATION = re.compile(r"(?P<number>[0-9]+(?:\.[0-9]+)?|\.[0-9]+)(?P<unit>[A-Za-z]*)")
_BARE_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
_NEGATIVE = re.compile(r"-\s*(?:[0-9]|\.[0-9])")

# format_duration works in whole microseconds so that float noise (0.1 * 1000) does not show.
_MICROSECONDS_PER_UNIT: tuple[tuple[str, int], ...] = (("h", 3_600_000_000), ("m", 60_000_000), ("s", 1_000_000))


def parse_duration(text: str) -> float:
    """Seconds in `text` (`100ms`, `2s`, `1.5s`, `5m`, `1h`, `0s`); ValueError showing the form otherwise."""
    stripped = text.strip()
    if not stripped:
        raise ValueError(f"invalid duration {text!r}: empty; give a number with a unit, {ACCEPTED_FORM}")
    if _NEGATIVE.match(stripped):
        raise ValueError(f"invalid duration {text!r}: must not be negative; {ACCEPTED_FORM}")
    if _BARE_NUMBER.fullmatch(stripped):
        raise ValueError(f"invalid duration {text!r}: give a unit, {ACCEPTED_FORM}")
    match = _DURATION.fullmatch(stripped)
    if match is None:
        raise ValueError(f"invalid duration {text!r}: expected a number and a unit, {ACCEPTED_FORM}")
    unit = match["unit"]
    if unit not in _UNIT_SCALE:
        raise ValueError(f"invalid duration {text!r}: unknown unit {unit!r}; use ms, s, m or h, {ACCEPTED_FORM}")
    multiplier, divisor = _UNIT_SCALE[unit]
    seconds = float(match["number"]) * multiplier / divisor
    if not math.isfinite(seconds):  # e.g. four hundred digits followed by "h"
        raise ValueError(f"invalid duration {text!r}: too large; {ACCEPTED_FORM}")
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest form that parse_duration reads back (to the microsecond): 0.1 -> `100ms`, 300 -> `5m`.

    A whole number of hours, minutes or seconds uses that unit; anything else is written in
    milliseconds (1.5 -> `1500ms`, 0.0025 -> `2.5ms`). Resolution is one microsecond.
    """
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise TypeError(f"format_duration needs a number of seconds, not {type(seconds).__name__}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"cannot format {seconds!r} as a duration: it must be a finite number >= 0")
    microseconds = round(seconds * 1_000_000)
    if microseconds == 0:
        return "0s"
    for unit, per_unit in _MICROSECONDS_PER_UNIT:
        if microseconds % per_unit == 0:
            return f"{microseconds // per_unit}{unit}"
    whole_ms, rest_us = divmod(microseconds, 1000)
    if rest_us == 0:
        return f"{whole_ms}ms"
    return f"{whole_ms}.{rest_us:03d}".rstrip("0") + "ms"


def duration_option(text: str) -> float:
    """parse_duration for a typer option (`parser=duration_option`): bad input is a usage error, exit 2."""
    try:
        return parse_duration(text)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
