"""keygen, id and --version as a user runs them: real processes, exit codes, stderr."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

from tomproto import __version__
from tomproto.identity import NodeId, load_identity


def tom_stress(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tomstress", *arguments], capture_output=True, text=True, timeout=60
    )


def test_version() -> None:
    result = tom_stress("--version")
    assert result.returncode == 0
    assert result.stdout.startswith(f"tom-stress {__version__} ")


def test_keygen_then_id_print_the_same_node_id(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "identity"
    created = tom_stress("keygen", "--identity", str(path))
    assert created.returncode == 0, created.stderr
    node_id = created.stdout.strip()
    assert NodeId.parse(node_id) == load_identity(path).node_id
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    shown = tom_stress("id", "--identity", str(path))
    assert (shown.returncode, shown.stdout.strip()) == (0, node_id)
    as_json = json.loads(tom_stress("id", "--identity", str(path), "--json").stdout)
    assert as_json["node_id"] == node_id
    assert NodeId.parse(as_json["node_id_base32"]).hex == node_id


def test_keygen_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    path = tmp_path / "identity"
    first = tom_stress("keygen", "--identity", str(path)).stdout.strip()
    refused = tom_stress("keygen", "--identity", str(path))
    assert refused.returncode == 2
    assert "already exists" in refused.stderr and "--force" in refused.stderr
    assert load_identity(path).node_id.hex == first
    forced = tom_stress("keygen", "--identity", str(path), "--force")
    assert forced.returncode == 0
    assert forced.stdout.strip() != first


def test_id_of_a_file_that_is_not_an_identity_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "identity"
    path.write_bytes(b"not a key")
    result = tom_stress("id", "--identity", str(path))
    assert result.returncode == 2
    assert "holds 9 bytes" in result.stderr and "exactly 32" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_flag_is_a_usage_error() -> None:
    result = tom_stress("id", "--bogus")
    assert result.returncode == 2
    assert "--bogus" in result.stderr


def test_an_identity_file_others_can_read_draws_a_warning_and_still_works(tmp_path: Path) -> None:
    path = tmp_path / "identity"
    node_id = tom_stress("keygen", "--identity", str(path)).stdout.strip()
    private = tom_stress("id", "--identity", str(path))
    assert private.stdout.strip() == node_id and "warning" not in private.stderr
    path.chmod(0o644)
    exposed = tom_stress("id", "--identity", str(path))
    assert exposed.returncode == 0 and exposed.stdout.strip() == node_id
    assert f"warning: identity file {path} can be read by group or others (mode 0644)" in exposed.stderr
    assert f"chmod 600 {path}" in exposed.stderr
