"""The run archive: one JSON object per line, in a file that is never overwritten (spec §4).

Rules this module enforces:
- The file name is `<name>_<mode>_<UTC yyyymmddThhmmssZ>[_N].jsonl` and the file is opened with
  exclusive creation, so a second run in the same second, or another writer racing us, gets the
  next suffix instead of clobbering an archive someone may already have published.
- Every line carries `ev`, `t` (monotonic seconds since the archive was created, to the
  microsecond) and `ts` (UTC wall clock, milliseconds, `Z`), in that order, then the event fields.
- Each line goes to the file unbuffered, in one write call where the kernel allows it, so a crash
  or a kill loses at most the line being written; a reader ignores such a truncated last line and
  nothing else. `fsync` runs once, on close: per line it would make the measuring device slow, on
  the small ARM boards the tool runs on, exactly while it measures.
- A write that fails (full disk, I/O error) never raises into the run: the file is cut back to
  its last complete line and closed, the error is kept in `failure`, `on_failure` is told once,
  and later writes are dropped. The owner stops measuring and reports it (exit 4 in the CLI).
- Values are JSON or plainly convertible to it (dataclasses, Enums, Paths); anything else, and NaN
  or infinity (which JSON cannot carry), is refused loudly rather than written as something a
  reader cannot parse.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import errno
import hashlib
import json
import math
import os
import platform
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path, PurePath
from types import TracebackType
from typing import Any, BinaryIO

__all__ = [
    "SCHEMA_VERSION",
    "SCHEMA_RESOURCE",
    "Archive",
    "archive_path",
    "check_archive_name",
    "host_facts",
    "read_archive",
    "to_json",
    "validate_archive",
]

SCHEMA_VERSION = 1
SCHEMA_RESOURCE = "archive-v1.schema.json"  # in the tomstress.schemas package

ARCHIVE_SUFFIX = ".jsonl"
HOSTNAME_HASH_HEX_CHARS = 16
# Enough for any honest use (thousands of runs started in the same second); a bound keeps a
# directory that refuses every creation from looping forever.
MAX_SUFFIX = 10_000
# A file name holds 255 bytes; `_<mode>_<yyyymmddThhmmssZ>_<N>.jsonl` takes up to about 50 of them.
MAX_NAME_BYTES = 200

MonotonicClock = Callable[[], float]
WallClock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _as_utc(moment: datetime, what: str) -> datetime:
    # A naive datetime is usually local time: taking it for UTC would shift every name and `ts`.
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware (UTC), got the naive datetime {moment.isoformat()}")
    return moment.astimezone(UTC)


def _check_name_part(value: str, what: str) -> None:
    if not value or value in {".", ".."} or any(char in value for char in "/\\\0"):
        raise ValueError(f"archive {what} {value!r} cannot be part of a file name (empty, a path, or NUL)")
    if any(not char.isprintable() for char in value):
        raise ValueError(f"archive {what} {value!r} holds control characters, which a file name should not")
    if len(value.encode("utf-8")) > MAX_NAME_BYTES:
        raise ValueError(
            f"archive {what} is {len(value.encode('utf-8'))} bytes long; at most {MAX_NAME_BYTES} leave room for "
            "the time stamp in a file name (255 bytes)"
        )


def check_archive_name(name: str) -> None:
    """ValueError saying why `name` cannot prefix an archive's file name."""
    _check_name_part(name, "name")


def _candidate_paths(directory: Path, name: str, mode: str, started_utc: datetime) -> Iterator[Path]:
    _check_name_part(name, "name")
    _check_name_part(mode, "mode")
    stamp = _as_utc(started_utc, "started_utc").strftime("%Y%m%dT%H%M%SZ")
    stem = f"{name}_{mode}_{stamp}"
    yield directory / f"{stem}{ARCHIVE_SUFFIX}"
    for suffix in range(2, MAX_SUFFIX + 1):
        yield directory / f"{stem}_{suffix}{ARCHIVE_SUFFIX}"


def archive_path(directory: Path, name: str, mode: str, started_utc: datetime) -> Path:
    """The first free `<name>_<mode>_<yyyymmddThhmmssZ>[_N].jsonl` in `directory` (N from 2)."""
    for path in _candidate_paths(directory, name, mode, started_utc):
        if not path.exists():
            return path
    raise FileExistsError(f"no free archive name in {directory}: {MAX_SUFFIX} archives share that second")


def _format_ts(moment: datetime) -> str:
    utc = _as_utc(moment, "the wall clock")
    # Truncated, not rounded, to the millisecond: rounding .9996 would need to carry into the seconds.
    return f"{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond // 1000:03d}Z"


def _to_json(value: Any, where: str) -> Any:
    """`value` as plain JSON types; TypeError/ValueError naming `where` for what JSON cannot hold."""
    if isinstance(value, enum.Enum):  # first: an IntEnum or StrEnum is also an int or a str
        return _to_json(value.value, where)
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"archive field {where} is {value!r}; JSON has no NaN or infinity (write None)")
        return value
    if isinstance(value, PurePath):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        # Field by field, not dataclasses.asdict: asdict rebuilds a Counter from its (key, count)
        # pairs, which counts the pairs themselves.
        return _to_json({field.name: getattr(value, field.name) for field in dataclasses.fields(value)}, where)
    if isinstance(value, dict):
        converted: dict[str, Any] = {}
        for key, item in value.items():
            if isinstance(key, enum.Enum):
                key = key.value
            if not isinstance(key, str):
                raise TypeError(f"archive field {where} has the key {key!r}: JSON object keys must be str")
            converted[key] = _to_json(item, f"{where}.{key}")
        return converted
    if isinstance(value, (list, tuple)):
        return [_to_json(item, f"{where}[{index}]") for index, item in enumerate(value)]
    raise TypeError(
        f"archive field {where} is a {type(value).__module__}.{type(value).__qualname__}, which is not "
        "JSON-serialisable: give str, int, float, bool, None, list, dict, a dataclass, an Enum or a Path"
    )


def to_json(value: Any, where: str = "value") -> Any:
    """`value` as plain JSON types, as the archive writes it (dataclasses, Enums, Paths, Counters
    included); TypeError/ValueError naming `where` for what JSON cannot hold."""
    return _to_json(value, where)


class Archive:
    """An open archive file. Create it with `Archive.create`; use it as a context manager."""

    def __init__(
        self, path: Path, file: BinaryIO, started_utc: datetime, start_t: float,
        monotonic: MonotonicClock, wall: WallClock,
    ) -> None:
        self._path = path
        self._file: BinaryIO | None = file
        self._complete_bytes = 0  # the file's length up to its last complete line
        self.failure: OSError | None = None
        # Told once, with the error, when a write or the final flush fails.
        self.on_failure: Callable[[OSError], None] | None = None
        self._started_utc = started_utc
        self._start_t = start_t
        self._monotonic = monotonic
        self._wall = wall

    @classmethod
    def create(
        cls,
        directory: Path,
        name: str,
        mode: str,
        *,
        monotonic: MonotonicClock = time.monotonic,
        wall: WallClock = _utc_now,
    ) -> Archive:
        """Create `directory` if needed and a new archive file in it; an existing file is never touched."""
        start_t = monotonic()
        started_utc = _as_utc(wall(), "the wall clock")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        # No exists() check first: exclusive creation is the check, and it also holds when another
        # process creates the same name between our look and our open.
        for path in _candidate_paths(directory, name, mode, started_utc):
            try:
                # Unbuffered: each line reaches the kernel in write(), not in a later flush that
                # could fail for lines the run believes written.
                file = open(path, "xb", buffering=0)  # noqa: SIM115 - closed by Archive.close
            except FileExistsError:
                continue
            return cls(path, file, started_utc, start_t, monotonic, wall)
        raise FileExistsError(f"no free archive name in {directory}: {MAX_SUFFIX} archives share that second")

    @property
    def path(self) -> Path:
        return self._path

    @property
    def started_utc(self) -> datetime:
        """Wall-clock time of creation, the one in the file name."""
        return self._started_utc

    @property
    def closed(self) -> bool:
        return self._file is None

    @property
    def failed(self) -> bool:
        return self.failure is not None

    def t_of(self, monotonic_s: float) -> float:
        """The archive `t` of a moment read from the archive's monotonic clock."""
        return round(monotonic_s - self._start_t, 6)

    def write(self, ev: str, **fields: Any) -> dict[str, Any]:
        """Append one event line (`ev`, `t`, `ts`, then `fields`) and return the event.

        After a failed write (`failure` set) the event is returned but not written."""
        if self._file is None and self.failure is None:
            raise ValueError(f"archive {self._path} is closed; cannot write the {ev!r} event")
        if not isinstance(ev, str) or not ev:
            raise ValueError(f"an archive event name must be a non-empty str, not {ev!r}")
        for reserved in ("t", "ts"):
            if reserved in fields:
                raise ValueError(f"{reserved!r} is set by the archive itself; do not pass it to write({ev!r})")
        # Convert before reading the clocks, so that a refused event costs nothing and leaves no trace.
        converted = {key: _to_json(value, f"{ev}.{key}") for key, value in fields.items()}
        record: dict[str, Any] = {
            "ev": ev,
            "t": round(self._monotonic() - self._start_t, 6),
            "ts": _format_ts(self._wall()),
            **converted,
        }
        line = json.dumps(record, ensure_ascii=False, allow_nan=False, separators=(",", ":")) + "\n"
        if self._file is not None:
            self._append(self._file, line.encode("utf-8"))
        return record

    def _append(self, file: BinaryIO, data: bytes) -> None:
        """Write all of `data`; on an error, end the archive on its last complete line."""
        view = memoryview(data)
        try:
            while view:
                # A raw file writes what the disk takes; a short write is retried for the rest.
                written = file.write(view)
                if not written:
                    raise OSError(errno.EIO, "the archive file accepted no bytes")
                view = view[written:]
            file.flush()  # a no-op on the raw file Archive.create opens; not on every file
        except OSError as error:
            self._fail(error)
            return
        self._complete_bytes += len(data)

    def _fail(self, error: OSError) -> None:
        file, self._file = self._file, None
        self.failure = error
        if file is not None:
            # A cut line would read as a crash; and on a full disk this frees its bytes.
            with contextlib.suppress(OSError, ValueError):
                os.ftruncate(file.fileno(), self._complete_bytes)
            with contextlib.suppress(OSError):
                file.close()
        if self.on_failure is not None:
            self.on_failure(error)

    def close(self) -> None:
        """Flush, fsync and close; closing again does nothing. A failure here is kept in
        `failure` (and told to `on_failure`), as for a write."""
        file = self._file
        if file is None:
            return
        try:
            file.flush()
            os.fsync(file.fileno())
        except OSError as error:
            self._fail(error)
            return
        self._file = None
        file.close()

    def __enter__(self) -> Archive:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<Archive {str(self._path)!r} {state}>"


def host_facts() -> dict[str, str]:
    """What the run_start event says about the machine: OS, kernel, arch, Python, hashed host name.

    The host name itself never goes into an archive (archives get shared, and a host name often
    names its owner); its short hash still tells two runs from the same machine apart. It is an
    unsalted hash, so it hides a distinctive name but not a guessable one like `raspberrypi`.
    """
    hostname_hash = hashlib.sha256(platform.node().encode("utf-8")).hexdigest()[:HOSTNAME_HASH_HEX_CHARS]
    return {
        "os": platform.system(),
        "kernel": platform.release(),
        "arch": platform.machine(),
        "python": platform.python_version(),
        "hostname_hash": hostname_hash,
    }


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _numbered_events(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number from 1, event) for each line; a truncated last line is skipped, any other bad line raises."""
    data = Path(path).read_bytes()
    lines = data.split(b"\n")
    # split() leaves "" after a final newline; anything else there is a last line without its newline.
    unterminated = lines.pop()
    numbered = [(number, line, True) for number, line in enumerate(lines, start=1)]
    if unterminated:
        numbered.append((len(lines) + 1, unterminated, False))
    for number, raw, terminated in numbered:
        try:
            event = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
        except (UnicodeDecodeError, ValueError) as error:
            if not terminated:
                # The writer ends every line with its newline in the same write: a last line without
                # one that does not parse is a crash mid-write, and the events before it stand.
                return
            raise ValueError(f"{path}: line {number} is not valid JSON: {error}") from None
        if not isinstance(event, dict):
            raise ValueError(f"{path}: line {number} is a JSON {type(event).__name__}, not an object")
        yield number, event


def read_archive(path: Path) -> list[dict[str, Any]]:
    """Every event of an archive, in order. A truncated last line is ignored; any other bad line is a ValueError."""
    return [event for _, event in _numbered_events(path)]


def _load_schema() -> dict[str, Any]:
    text = resources.files("tomstress.schemas").joinpath(SCHEMA_RESOURCE).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def validate_archive(path: Path) -> None:
    """ValueError naming the line and the problem unless every line matches archive-v1.schema.json.

    Beyond the per-line schema: the archive must start with `run_start`, and a summary's probe
    counts must add up (sent = ok + late + lost + send_error, spec §1). Needs the `jsonschema`
    package, which the tool itself does not.
    """
    import jsonschema  # here, not at the top: only tests and reports validate archives

    schema = _load_schema()
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    validator = validator_class(schema)

    seen_any = False
    for number, event in _numbered_events(path):
        if not seen_any and event.get("ev") != "run_start":
            raise ValueError(f"{path}: line {number}: the first event must be run_start, not {event.get('ev')!r}")
        seen_any = True
        errors = list(validator.iter_errors(event))
        # A field that breaks its event's rules also makes every field of that event "unevaluated"
        # (a failed branch keeps no annotations); name the real problem, not that echo of it.
        causes = [error for error in errors if error.validator != "unevaluatedProperties"] or errors
        error = jsonschema.exceptions.best_match(causes)
        if error is not None:
            where = error.json_path
            raise ValueError(f"{path}: line {number} ({event.get('ev')!r} event) at {where}: {error.message}")
        if event["ev"] == "summary":
            probes = event["probes"]
            outcomes = probes["ok"] + probes["late"] + probes["lost"] + probes["send_error"]
            if probes["sent"] != outcomes:
                raise ValueError(
                    f"{path}: line {number} (summary): probes.sent is {probes['sent']} but "
                    f"ok + late + lost + send_error is {outcomes}"
                )
    if not seen_any:
        raise ValueError(f"{path}: the archive holds no events")
