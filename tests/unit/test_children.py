"""Reading a child's JSON lines never hangs on a silent child, and takes nothing past the line.

The child here is a pipe the test writes to itself: nothing waits on a clock."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import IO, Any

import pytest

from tomstress.benchmarks.children import read_json_line


class Child:
    """What the reader uses of a Popen: its stdout and its arguments."""

    def __init__(self, stdout: IO[str], args: list[str]) -> None:
        self.stdout, self.args = stdout, args


@pytest.fixture
def child() -> Iterator[tuple[Any, IO[bytes]]]:
    read_end, write_end = os.pipe()
    stdout, writer = os.fdopen(read_end, "r"), os.fdopen(write_end, "wb", buffering=0)
    yield Child(stdout, ["flooder", "--kind", "quic"]), writer
    stdout.close()
    if not writer.closed:
        writer.close()


def read(process: Any, event: str, timeout_s: float = 0.0) -> dict[str, Any]:
    return read_json_line(process, event, timeout_s)


def test_a_silent_child_is_a_timeout_naming_it_not_a_hang(child: tuple[Any, IO[bytes]]) -> None:
    process, _ = child
    with pytest.raises(TimeoutError, match="no 'ready' line from flooder --kind quic"):
        read(process, "ready")


def test_half_a_line_is_not_a_line_and_the_rest_is_kept_for_the_next_read(child: tuple[Any, IO[bytes]]) -> None:
    process, writer = child
    writer.write(b'{"event": "ready", "packets": 5}\n{"event": "do')
    assert read(process, "ready") == {"event": "ready", "packets": 5}
    with pytest.raises(TimeoutError):
        read(process, "done")  # its newline has not come
    writer.write(b'ne", "sent": 3}\n')
    assert read(process, "done") == {"event": "done", "sent": 3}


def test_other_lines_are_skipped_and_a_closed_output_ends_the_wait(child: tuple[Any, IO[bytes]]) -> None:
    process, writer = child
    writer.write(b'not json\n[1, 2]\n{"event": "stats"}\n{"event": "stopped", "code": 0}\n')
    assert read(process, "stopped") == {"event": "stopped", "code": 0}
    writer.write(b'{"event": "stats"}\n')
    writer.close()
    with pytest.raises(TimeoutError, match="closed its output before a 'stopped' line"):
        read(process, "stopped", timeout_s=60.0)  # returns at the end of the output, not at 60 s


def test_nothing_past_the_line_is_taken_from_the_pipe(child: tuple[Any, IO[bytes]]) -> None:
    process, writer = child
    writer.write(b'{"event": "ready"}\nthe rest\n')
    writer.close()
    read(process, "ready")
    assert process.stdout.read() == "the rest\n"  # what communicate() would get
