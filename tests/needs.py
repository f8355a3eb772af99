"""What a test tier needs from the machine, and what to do when it is missing.

A test that cannot run here is skipped with the missing pieces named and how to get them, so
`python -m pytest -q` passes on a laptop without root or the lab's tools. CI sets
TOM_TESTS_REQUIRE_ALL=1 (.ci/run): there a test that would be skipped fails instead, so a lab
test can never be lost silently because a tool went missing from the CI machine.

Mark a test with `@pytest.mark.needs(ROOT, command("iptables", "iptables"))`; every test under
tests/lab/ needs LAB (tests/lab/conftest.py).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "Need", "ROOT", "LAB", "NETFILTERQUEUE", "REQUIRE_ALL_VARIABLE", "command", "explain", "missing", "require_all"
]

REQUIRE_ALL_VARIABLE = "TOM_TESTS_REQUIRE_ALL"


@dataclass(frozen=True)
class Need:
    name: str
    present: Callable[[], bool]
    how: str  # what the user does to get it


def command(name: str, debian_package: str) -> Need:
    return Need(name, lambda: shutil.which(name) is not None, f"apt-get install {debian_package}")


def _importable(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


ROOT = Need("root", lambda: os.geteuid() == 0, "run the tests as root (namespaces, iptables, mounts)")
NETFILTERQUEUE = Need(
    "NetfilterQueue",
    lambda: _importable("netfilterqueue"),
    "apt-get install libnetfilter-queue-dev, then pip install '.[lab]'",
)
# The namespace lab: ip netns and veth, NAT and loss rules, conntrack flushes, ICMP as the truth.
LAB = (
    ROOT,
    command("ip", "iproute2"),
    command("iptables", "iptables"),
    command("conntrack", "conntrack"),
    command("ping", "iputils-ping"),
)


def missing(needs: tuple[Need, ...]) -> list[Need]:
    seen: set[str] = set()
    absent = []
    for need in needs:
        if need.name not in seen and not need.present():
            absent.append(need)
        seen.add(need.name)
    return absent


def require_all() -> bool:
    return os.environ.get(REQUIRE_ALL_VARIABLE, "") not in ("", "0")


def explain(absent: list[Need]) -> str:
    return "needs " + "; ".join(f"{need.name} ({need.how})" for need in absent)
