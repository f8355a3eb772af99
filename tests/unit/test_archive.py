"""The archive is named as the spec says, never overwrites, survives a crash, and matches its schema."""

from __future__ import annotations

import collections
import dataclasses
import enum
import errno
import hashlib
import io
import json
import platform
from datetime import UTC, datetime, timedelta, timezone
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from tomstress.archive import (
    SCHEMA_RESOURCE,
    SCHEMA_VERSION,
    Archive,
    archive_path,
    host_facts,
    read_archive,
    validate_archive,
)

STARTED = datetime(2026, 11, 25, 17, 41, 17, 123_456, tzinfo=UTC)
LOCAL_NODE = hashlib.sha256(b"local node").hexdigest()
PEER_NODE = hashlib.sha256(b"peer node").hexdigest()


class FakeClocks:
    """A monotonic clock and a wall clock that move only when the test says so."""

    def __init__(self, monotonic_s: float = 5000.0, wall: datetime = STARTED) -> None:
        self.monotonic_s = monotonic_s
        self.wall_time = wall

    def monotonic(self) -> float:
        return self.monotonic_s

    def wall(self) -> datetime:
        return self.wall_time

    def advance(self, seconds: float) -> None:
        self.monotonic_s += seconds
        self.wall_time += timedelta(seconds=seconds)


def create(directory: Path, clocks: FakeClocks, name: str = "v5", mode: str = "campaign") -> Archive:
    return Archive.create(directory, name, mode, monotonic=clocks.monotonic, wall=clocks.wall)


# --- names -----------------------------------------------------------------------------------


def test_archive_path_follows_the_spec_naming(tmp_path: Path) -> None:
    assert archive_path(tmp_path, "v5", "campaign", STARTED) == tmp_path / "v5_campaign_20261125T174117Z.jsonl"


def test_archive_path_uses_utc_whatever_the_time_zone_of_the_start(tmp_path: Path) -> None:
    paris = timezone(timedelta(hours=1))
    started_in_paris = datetime(2026, 11, 25, 18, 41, 17, tzinfo=paris)
    assert archive_path(tmp_path, "v5", "ping", started_in_paris).name == "v5_ping_20261125T174117Z.jsonl"


def test_archive_path_refuses_a_naive_start_time(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        archive_path(tmp_path, "v5", "ping", datetime(2026, 11, 25, 17, 41, 17))


@pytest.mark.parametrize("name", ["", "../escape", "a/b", ".."])
def test_archive_path_refuses_names_that_are_not_a_file_name_part(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="file name"):
        archive_path(tmp_path, name, "ping", STARTED)


def test_archive_path_takes_the_next_suffix_when_the_name_is_taken(tmp_path: Path) -> None:
    base = tmp_path / "v5_campaign_20261125T174117Z.jsonl"
    base.write_text("")
    assert archive_path(tmp_path, "v5", "campaign", STARTED).name == "v5_campaign_20261125T174117Z_2.jsonl"
    (tmp_path / "v5_campaign_20261125T174117Z_2.jsonl").write_text("")
    assert archive_path(tmp_path, "v5", "campaign", STARTED).name == "v5_campaign_20261125T174117Z_3.jsonl"


def test_create_never_overwrites_an_existing_archive(tmp_path: Path) -> None:
    taken = [tmp_path / "v5_campaign_20261125T174117Z.jsonl", tmp_path / "v5_campaign_20261125T174117Z_2.jsonl"]
    for number, path in enumerate(taken):
        path.write_text(f"precious {number}\n")

    with create(tmp_path, FakeClocks()) as archive:
        archive.write("error", message="x")

    assert archive.path == tmp_path / "v5_campaign_20261125T174117Z_3.jsonl"
    assert [path.read_text() for path in taken] == ["precious 0\n", "precious 1\n"]


def test_two_runs_in_the_same_second_get_two_files(tmp_path: Path) -> None:
    clocks = FakeClocks()
    with create(tmp_path, clocks) as first, create(tmp_path, clocks) as second:
        first.write("error", message="first")
        second.write("error", message="second")
    assert first.path != second.path
    assert read_archive(first.path)[0]["message"] == "first"
    assert read_archive(second.path)[0]["message"] == "second"


def test_create_makes_the_directory(tmp_path: Path) -> None:
    directory = tmp_path / "results" / "2026"
    with create(directory, FakeClocks()) as archive:
        pass
    assert archive.path.parent == directory
    assert archive.path.is_file()


# --- lines -----------------------------------------------------------------------------------


def test_each_line_starts_with_ev_t_ts_then_the_fields(tmp_path: Path) -> None:
    clocks = FakeClocks()
    with create(tmp_path, clocks) as archive:
        clocks.advance(0.25)
        written = archive.write("duplicate", seq=7)

    assert written == {"ev": "duplicate", "t": 0.25, "ts": "2026-11-25T17:41:17.373Z", "seq": 7}
    assert list(written) == ["ev", "t", "ts", "seq"]
    on_disk = archive.path.read_text(encoding="utf-8")
    assert on_disk == '{"ev":"duplicate","t":0.25,"ts":"2026-11-25T17:41:17.373Z","seq":7}\n'


def test_t_counts_monotonic_seconds_since_creation_to_the_microsecond(tmp_path: Path) -> None:
    clocks = FakeClocks(monotonic_s=123_456.789)
    with create(tmp_path, clocks) as archive:
        first = archive.write("error", message="at once")
        clocks.advance(1 / 3)
        second = archive.write("error", message="a third later")
        clocks.monotonic_s += 3600  # the wall clock may jump or stand still; t follows the monotonic one
        third = archive.write("error", message="an hour later")
    assert [first["t"], second["t"], third["t"]] == [0.0, 0.333333, 3600.333333]


def test_ts_is_utc_with_milliseconds_truncated_not_rounded(tmp_path: Path) -> None:
    clocks = FakeClocks(wall=datetime(2026, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC))
    with create(tmp_path, clocks) as archive:
        last_moment = archive.write("error", message="x")
        clocks.wall_time = datetime(2027, 1, 1, 9, 0, 0, 5_000, tzinfo=timezone(timedelta(hours=9)))
        tokyo = archive.write("error", message="y")
    # Rounding .999999 up would need to carry into the seconds, the day and the year.
    assert last_moment["ts"] == "2026-12-31T23:59:59.999Z"
    assert tokyo["ts"] == "2027-01-01T00:00:00.005Z"


def test_every_line_is_on_disk_before_the_archive_is_closed(tmp_path: Path) -> None:
    clocks = FakeClocks()
    with create(tmp_path, clocks) as archive:
        archive.write("error", message="first")
        first = {"ev": "error", "t": 0.0, "ts": "2026-11-25T17:41:17.123Z", "message": "first"}
        assert read_archive(archive.path) == [first]
        clocks.advance(1)
        archive.write("interrupted", signal="SIGINT")
        on_disk = archive.path.read_bytes()
        assert on_disk.endswith(b"\n") and on_disk.count(b"\n") == 2
        assert [event["ev"] for event in read_archive(archive.path)] == ["error", "interrupted"]


def test_write_returns_exactly_what_a_reader_gets_back(tmp_path: Path) -> None:
    with create(tmp_path, FakeClocks()) as archive:
        written = [
            archive.write("error", message="caf\u00e9 \u2014 line\nbreak \"quoted\""),
            archive.write("summary", probes={"sent": 0}, rtt_ms={}, loss={"ratio": None}, exit_code=0),
        ]
    assert read_archive(archive.path) == written
    assert len(archive.path.read_bytes().splitlines()) == 2  # a newline in a value stays escaped


class Outcome(enum.Enum):
    OK = "ok"


class Phase(enum.StrEnum):
    PING = "ping"


@dataclasses.dataclass(frozen=True, slots=True)
class Stats:
    count: int
    p50_ms: float | None
    outcome: Outcome
    source: Path


def test_dataclasses_enums_and_paths_become_plain_json(tmp_path: Path) -> None:
    with create(tmp_path, FakeClocks()) as archive:
        written = archive.write(
            "summary",
            outcome=Outcome.OK,
            phase=Phase.PING,
            campaign=Path("campaigns/v5.toml"),
            stats=Stats(3, None, Outcome.OK, Path("a/b")),
            windows=(1, 2.5),
            by_phase={Phase.PING: [Outcome.OK]},
        )
    fields = {key: value for key, value in written.items() if key not in {"ev", "t", "ts"}}
    assert fields == {
        "outcome": "ok",
        "phase": "ping",
        "campaign": "campaigns/v5.toml",
        "stats": {"count": 3, "p50_ms": None, "outcome": "ok", "source": "a/b"},
        "windows": [1, 2.5],
        "by_phase": {"ping": ["ok"]},
    }
    assert type(written["phase"]) is str  # the Enum itself is not what a reader of `written` expects
    assert read_archive(archive.path) == [written]


@dataclasses.dataclass
class Tallies:
    by_reason: collections.Counter[str]


def test_a_counter_inside_a_dataclass_keeps_its_counts(tmp_path: Path) -> None:
    # dataclasses.asdict would rebuild the Counter from its (key, count) pairs and count those.
    with create(tmp_path, FakeClocks()) as archive:
        written = archive.write("summary", tallies=Tallies(collections.Counter({"retry": 3, "drop": 1})))
    assert written["tallies"] == {"by_reason": {"retry": 3, "drop": 1}}
    assert read_archive(archive.path) == [written]


@pytest.mark.parametrize(
    ("fields", "error", "named"),
    [
        ({"payload": b"\x00"}, TypeError, "error.payload"),
        ({"peers": {"a", "b"}}, TypeError, "error.peers"),
        ({"when": STARTED}, TypeError, "error.when"),
        ({"nested": {"deep": [1, object()]}}, TypeError, r"error.nested.deep\[1\]"),
        ({"counts": {1: 2}}, TypeError, "error.counts"),
        ({"rtt_ms": float("nan")}, ValueError, "error.rtt_ms"),
        ({"rtt_ms": float("inf")}, ValueError, "error.rtt_ms"),
    ],
)
def test_values_json_cannot_hold_are_refused_and_nothing_is_written(
    tmp_path: Path, fields: dict[str, Any], error: type[Exception], named: str
) -> None:
    with create(tmp_path, FakeClocks()) as archive:
        with pytest.raises(error, match=named):
            archive.write("error", message="x", **fields)
        assert archive.path.read_bytes() == b""


@pytest.mark.parametrize("reserved", ["t", "ts"])
def test_t_and_ts_cannot_be_forged_by_the_caller(tmp_path: Path, reserved: str) -> None:
    with create(tmp_path, FakeClocks()) as archive, pytest.raises(ValueError, match="set by the archive"):
        archive.write("error", message="x", **{reserved: 0})


def test_writing_after_close_is_a_clear_error_and_close_is_idempotent(tmp_path: Path) -> None:
    archive = create(tmp_path, FakeClocks())
    archive.write("error", message="before")
    archive.close()
    archive.close()
    assert archive.closed
    with pytest.raises(ValueError, match="closed"):
        archive.write("error", message="after")
    assert [event["message"] for event in read_archive(archive.path)] == ["before"]


def test_leaving_the_with_block_closes_the_archive_even_on_an_exception(tmp_path: Path) -> None:
    # The with block is the subject: an exception raised inside it must still close the archive.
    with pytest.raises(KeyboardInterrupt), create(tmp_path, FakeClocks()) as archive:  # noqa: PT012
        archive.write("interrupted", signal="SIGINT")
        raise KeyboardInterrupt
    assert archive.closed
    assert read_archive(archive.path)[0]["signal"] == "SIGINT"


class DiskThatFills(io.RawIOBase):
    """A real file on a disk that takes `capacity` bytes, then answers ENOSPC, as a full disk does
    (short write first, then the error)."""

    def __init__(self, path: Path, capacity: int) -> None:
        self._file = open(path, "wb", buffering=0)  # noqa: SIM115 - closed with this object
        self._room = capacity

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if self._room == 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        taken = bytes(data[: self._room])
        self._room -= len(taken)
        return self._file.write(taken)

    def fileno(self) -> int:
        return self._file.fileno()

    def close(self) -> None:
        self._file.close()
        super().close()


def test_a_full_disk_ends_the_archive_on_its_last_complete_line_and_is_reported_once(tmp_path: Path) -> None:
    path = tmp_path / "full.jsonl"
    clocks = FakeClocks()
    disk = DiskThatFills(path, capacity=300)
    archive = Archive(path, disk, STARTED, 5000.0, clocks.monotonic, clocks.wall)  # type: ignore[arg-type]
    failures: list[OSError] = []
    archive.on_failure = failures.append
    written = 0
    for seq in range(20):  # about 75 bytes a line: the disk fills on the fifth
        archive.write("error", message=f"line {seq}")
        written += 0 if archive.failed else 1
    archive.close()
    assert 0 < written < 20
    assert [error.errno for error in failures] == [errno.ENOSPC]  # told once, not once a line
    assert archive.failure is failures[0]
    assert [event["message"] for event in read_archive(path)] == [f"line {seq}" for seq in range(written)]
    assert path.read_bytes().endswith(b"\n")  # the cut line is gone, not left half-written


def test_an_error_on_the_final_fsync_is_kept_as_the_archive_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = create(tmp_path, FakeClocks())
    archive.write("error", message="kept")

    def failing_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr("tomstress.archive.os.fsync", failing_fsync)
    archive.close()
    assert archive.closed and archive.failure is not None and archive.failure.errno == errno.EIO


# --- host facts ------------------------------------------------------------------------------


def test_host_facts_hash_the_hostname_and_never_show_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(platform, "node", lambda: "alice-macbook.home")
    facts = host_facts()
    assert set(facts) == {"os", "kernel", "arch", "python", "hostname_hash"}
    assert facts["python"] == platform.python_version()
    assert facts["hostname_hash"] == hashlib.sha256(b"alice-macbook.home").hexdigest()[:16]
    assert "alice" not in json.dumps(facts)

    monkeypatch.setattr(platform, "node", lambda: "bob-nas")
    assert host_facts()["hostname_hash"] != facts["hostname_hash"]


# --- reading ---------------------------------------------------------------------------------


def write_lines(path: Path, *lines: str, end: str = "\n") -> Path:
    path.write_text("\n".join(lines) + end, encoding="utf-8")
    return path


GOOD_LINE = '{"ev":"error","t":0.5,"ts":"2026-11-25T17:41:17.623Z","message":"x"}'


def test_a_line_cut_by_a_crash_at_the_end_is_ignored(tmp_path: Path) -> None:
    with create(tmp_path, FakeClocks()) as archive:
        archive.write("error", message="one")
        archive.write("error", message="two")
    with archive.path.open("ab") as file:
        file.write(b'{"ev":"probe","t":1.2,"ts":"2026-11-25T17:4')
    assert [event["message"] for event in read_archive(archive.path)] == ["one", "two"]


def test_a_cut_in_the_middle_of_a_utf8_character_is_still_a_truncated_last_line(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_bytes(GOOD_LINE.encode() + b"\n" + '{"ev":"error","message":"caf\u00e9'.encode()[:-1])
    assert len(read_archive(path)) == 1


def test_a_complete_last_line_without_its_newline_is_kept(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "a.jsonl", GOOD_LINE, GOOD_LINE, end="")
    assert len(read_archive(path)) == 2


def test_a_bad_line_in_the_middle_is_refused_with_its_number(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "a.jsonl", GOOD_LINE, '{"ev":"error","t":', GOOD_LINE)
    with pytest.raises(ValueError, match="line 2 is not valid JSON"):
        read_archive(path)


def test_a_bad_last_line_that_ends_with_a_newline_was_not_cut_by_a_crash(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "a.jsonl", GOOD_LINE, "not json")
    with pytest.raises(ValueError, match="line 2"):
        read_archive(path)


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("[1, 2]", "not an object"),
        ("", "not valid JSON"),
        ('{"ev":"probe","rtt_ms":NaN}', "not valid JSON"),
    ],
)
def test_lines_that_are_not_json_objects_are_refused(tmp_path: Path, line: str, problem: str) -> None:
    path = write_lines(tmp_path / "a.jsonl", GOOD_LINE, line, GOOD_LINE)
    with pytest.raises(ValueError, match=f"line 2 .*{problem}"):
        read_archive(path)


# --- schema ----------------------------------------------------------------------------------


def load_schema() -> dict[str, Any]:
    return json.loads(resources.files("tomstress.schemas").joinpath(SCHEMA_RESOURCE).read_text("utf-8"))


def probe(seq: int, outcome: str, rtt_ms: float | None, **overrides: Any) -> dict[str, Any]:
    replied = outcome in {"ok", "late"}
    fields: dict[str, Any] = {
        "seq": seq,
        "phase": "ping",
        "outcome": outcome,
        "rtt_ms": rtt_ms,
        "scheduled_t": 1.0 + seq * 0.5,
        "sent_t": 1.0 + seq * 0.5 + 0.0004,
        "timer_error_ms": 0.4,
        "path_sent": "relay",
        "path_received": "relay" if replied else None,
        "size": 64,
        "wire_size": 412,
    }
    fields.update(overrides)
    return fields


def write_realistic_archive(directory: Path) -> Path:
    """A short ping run with every event the schema knows: the shape the runner will write."""
    clocks = FakeClocks()
    with create(directory, clocks) as archive:
        archive.write(
            "run_start",
            schema_version=SCHEMA_VERSION,
            run_id="01JDQ8Z5R3W6K9M2N4P7T0V1XY",
            tool={"name": "tom-stress", "version": "0.1.0", "build": "x86_64-linux-staticx"},
            mode="campaign",
            config={"campaign": Path("campaigns/v5.toml"), "interval_s": 0.5, "phases": ["ping"], "peer": None},
            campaign_sha256=hashlib.sha256(b"[campaign]").hexdigest(),
            host=host_facts(),
            node_ids={"local": LOCAL_NODE, "peer": PEER_NODE},
        )
        clocks.advance(0.412)
        archive.write("connected", handshake_ms=412.3, path="relay", peer_addr="203.0.113.7:4433")
        budget = {"rate_per_s": 24.0, "burst": 148.0, "duration_s": 70.5}
        archive.write(
            "hello",
            version="0.1.0",
            capabilities=["probe-v1", "follow-up", "datagram", "runtime-acks", "budget"],
            asked=budget,
            welcome={"version": "0.1.0", "capabilities": ["probe-v1", "budget"], "accepted": True,
                     "budget": {**budget, "rate_per_s": 20.0}, "reason": "capped to this responder's budget"},
            wait_ms=21.6,
            warning="the responder grants 20 msg/s, below the probe rate",
        )  # fmt: skip
        clocks.advance(0.6)
        archive.write("probe", **{**probe(0, "ok", 48.2), "outcome": Outcome.OK})  # an Enum, as the engine has
        archive.write("duplicate", seq=0)
        archive.write("responder_hold", seq=0, hold_ms=0.7315)
        archive.write("probe", **probe(1, "late", 10_512.0))
        archive.write("path_change", **{"from": "relay", "to": "direct", "path_rtt_ms": 11.4})
        archive.write("probe", **probe(2, "ok", 11.9, path_sent="direct", path_received="direct", transport="datagram"))
        archive.write("probe", **probe(3, "lost", None, path_sent="direct"))
        archive.write("probe", **probe(4, "send_error", None, sent_t=None, wire_size=None, error="connection closed"))
        archive.write("reconnect", down_t=3.1, up_t=5.4, time_to_recover_s=2.3)
        archive.write("error", message="peer unreachable for 2.3 s")
        clocks.advance(2.0)
        archive.write("interrupted", signal="SIGINT")
        archive.write(
            "summary",
            probes={"sent": 5, "ok": 2, "late": 1, "lost": 1, "send_error": 1, "duplicate": 1, "out_of_order": 0},
            rtt_ms={"n": 3, "p50": 48.2, "unreliable_quantiles": ["p99"]},
            loss={"ratio": 0.2, "percent": 20.0, "wilson_95": [0.036, 0.624]},
            exit_code=130,
            availability={"percent": 40.0, "outages": 1},
        )
    return archive.path


def test_a_realistic_archive_with_every_event_type_is_valid(tmp_path: Path) -> None:
    path = write_realistic_archive(tmp_path)
    validate_archive(path)
    written_events = {event["ev"] for event in read_archive(path)}
    # If the schema learns a new event, this archive must learn it too, or the test says so.
    assert written_events == set(load_schema()["properties"]["ev"]["enum"])


def rewrite(path: Path, line_number: int, change: Any) -> Path:
    """Rewrite event number `line_number` (from 1) of the archive with `change(event)`."""
    events = read_archive(path)
    event = events[line_number - 1]
    change(event)
    path.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    return path


def line_of(path: Path, ev: str, **match: Any) -> int:
    for number, event in enumerate(read_archive(path), start=1):
        if event["ev"] == ev and all(event.get(key) == value for key, value in match.items()):
            return number
    raise LookupError(ev)


def test_a_probe_outcome_outside_the_four_is_rejected_with_its_line(tmp_path: Path) -> None:
    path = write_realistic_archive(tmp_path)
    number = line_of(path, "probe", seq=1)
    rewrite(path, number, lambda event: event.update(outcome="maybe"))
    with pytest.raises(ValueError, match=rf"line {number} .*'maybe'"):
        validate_archive(path)


def test_an_event_without_t_is_rejected(tmp_path: Path) -> None:
    path = write_realistic_archive(tmp_path)
    number = line_of(path, "connected")
    rewrite(path, number, lambda event: event.pop("t"))
    with pytest.raises(ValueError, match=rf"line {number} .*'t' is a required property"):
        validate_archive(path)


def test_an_unknown_event_is_rejected(tmp_path: Path) -> None:
    path = write_realistic_archive(tmp_path)
    number = line_of(path, "duplicate")
    rewrite(path, number, lambda event: event.update(ev="dupe"))
    with pytest.raises(ValueError, match=rf"line {number} .*'dupe' is not one of"):
        validate_archive(path)


@pytest.mark.parametrize(
    ("ev", "match", "change", "problem"),
    [
        ("probe", {"seq": 0}, lambda e: e.update(rtt=1.0), "'rtt' was unexpected"),
        ("probe", {"seq": 0}, lambda e: e.update(rtt_ms=None), "None is not of type 'number'"),
        ("probe", {"seq": 3}, lambda e: e.update(rtt_ms=900.0), "900.0 is not of type 'null'"),
        ("probe", {"seq": 0}, lambda e: e.update(rtt_ms=-0.5), "rtt_ms"),
        ("probe", {"seq": 0}, lambda e: e.update(seq=-1), "-1 is less than the minimum of 0"),
        ("probe", {"seq": 0}, lambda e: e.update(path_sent="wifi"), "'wifi'"),
        ("probe", {"seq": 0}, lambda e: e.pop("wire_size"), "'wire_size' is a required property"),
        ("probe", {"seq": 0}, lambda e: e.update(seq=True), "True is not of type 'integer'"),
        ("connected", {}, lambda e: e.update(ts="2026-11-25T17:41:17Z"), "does not match"),
        ("connected", {}, lambda e: e.update(ts="2026-11-25T17:41:17.123+00:00"), "does not match"),
        ("connected", {}, lambda e: e.update(t=-0.001), "less than the minimum"),
        ("run_start", {}, lambda e: e.update(schema_version=2), "1 was expected"),
        ("run_start", {}, lambda e: e["node_ids"].update(peer=PEER_NODE.upper()), "node_ids"),
        ("run_start", {}, lambda e: e["host"].update(hostname="alice-macbook"), "'hostname' was unexpected"),
        ("run_start", {}, lambda e: e.pop("campaign_sha256"), "'campaign_sha256' is a required property"),
        ("interrupted", {}, lambda e: e.update(signal="SIGUSR1"), "'SIGUSR1' is not one of"),
        ("summary", {}, lambda e: e["probes"].pop("out_of_order"), "'out_of_order' is a required property"),
    ],
)
def test_events_that_break_the_schema_are_rejected(
    tmp_path: Path, ev: str, match: dict[str, Any], change: Any, problem: str
) -> None:
    path = write_realistic_archive(tmp_path)
    number = line_of(path, ev, **match)
    rewrite(path, number, change)
    with pytest.raises(ValueError, match=rf"line {number} .*{problem}"):
        validate_archive(path)


def test_a_summary_whose_outcomes_do_not_add_up_is_rejected(tmp_path: Path) -> None:
    path = write_realistic_archive(tmp_path)
    number = line_of(path, "summary")
    rewrite(path, number, lambda event: event["probes"].update(sent=6))
    with pytest.raises(ValueError, match=rf"line {number} .*sent is 6 but ok \+ late \+ lost \+ send_error is 5"):
        validate_archive(path)


def test_an_archive_must_open_with_run_start(tmp_path: Path) -> None:
    path = write_realistic_archive(tmp_path)
    events = read_archive(path)
    path.write_text("".join(json.dumps(event) + "\n" for event in events[1:]), encoding="utf-8")
    with pytest.raises(ValueError, match="line 1: the first event must be run_start"):
        validate_archive(path)


def test_an_archive_cut_by_a_crash_still_validates(tmp_path: Path) -> None:
    path = write_realistic_archive(tmp_path)
    with path.open("ab") as file:
        file.write(b'{"ev":"probe","seq":5,"pha')
    validate_archive(path)
