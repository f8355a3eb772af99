"""A disk that fills during a run: one error line, the summary on stdout, an archive that is valid
up to its last complete line, and exit 4. The disk is a real, small tmpfs (root tier)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.processes import finish, start_ping
from tests.needs import ROOT, command
from tomstress.archive import read_archive, validate_archive

SMALL_DISK_BYTES = 64 * 1024  # the run_start line and about a hundred probe lines


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SMALL_DISK_BYTES}", "tmpfs", str(mount_point)], check=True)
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "--lazy", str(mount_point)], check=False)


@pytest.mark.needs(ROOT, command("mount", "mount"))
def test_a_disk_that_fills_mid_run_stops_probing_and_still_gives_the_summary(small_disk: Path, tmp_path: Path) -> None:
    count = 3000  # far more probe lines than the disk holds
    ping = start_ping("--local", "--count", str(count), "--interval", "5ms", "--timeout", "2s", output_dir=small_disk)
    code, summary, stderr = finish(ping)
    assert code == 4, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "No space left on device" in errors[0], stderr
    assert "Traceback" not in stderr
    # The summary, which the archive could not take, is on stdout.
    assert summary is not None and summary["exit_code"] == 4
    assert "No space left on device" in summary["archive_error"]
    assert 0 < summary["probes"]["sent"] < count  # probing stopped when the disk filled
    archive = Path(summary["archive"])
    validate_archive(archive)  # every line there is a whole, valid event
    events = read_archive(archive)
    assert events[0]["ev"] == "run_start" and "summary" not in [event["ev"] for event in events]
    assert archive.read_bytes().endswith(b"\n")
    written = [event["seq"] for event in events if event["ev"] == "probe"]
    assert written, "not one probe line fitted"
