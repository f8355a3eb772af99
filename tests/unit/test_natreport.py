"""The NAT verdict follows from the mappings a relay saw, and says unknown when it cannot tell."""

from __future__ import annotations

from tomstress.natreport import (
    ADDRESS_AND_PORT_DEPENDENT,
    ADDRESS_DEPENDENT,
    ENDPOINT_INDEPENDENT,
    NO_NAT,
    UNKNOWN,
    verdict,
)

LOCAL = ("0.0.0.0", 40000)
R1, R1_PORT2, R2 = ("203.0.113.1", 7478), ("203.0.113.1", 7479), ("203.0.113.2", 7478)
MAPPED = ("203.0.113.10", 40000)


def test_no_nat_when_the_relay_sees_our_own_address_and_port() -> None:
    report = verdict(LOCAL, ["203.0.113.10"], [(R1, MAPPED), (R2, MAPPED), (R1_PORT2, MAPPED)])
    assert report.verdict == NO_NAT and report.port_preserved is True


def test_same_mapping_towards_two_ips_is_endpoint_independent() -> None:
    report = verdict(LOCAL, ["192.0.2.2"], [(R1, MAPPED), (R2, MAPPED), (R1_PORT2, MAPPED)])
    assert report.verdict == ENDPOINT_INDEPENDENT
    assert (report.varies_by_address, report.varies_by_port) == (False, False)


def test_mapping_that_follows_the_destination_ip_only_is_address_dependent() -> None:
    report = verdict(LOCAL, ["192.0.2.2"], [(R1, MAPPED), (R2, ("203.0.113.10", 40001)), (R1_PORT2, MAPPED)])
    assert report.verdict == ADDRESS_DEPENDENT


def test_mapping_that_follows_the_destination_port_is_symmetric() -> None:
    report = verdict(LOCAL, ["192.0.2.2"], [(R1, MAPPED), (R2, ("203.0.113.10", 5)), (R1_PORT2, ("203.0.113.10", 6))])
    assert report.verdict == ADDRESS_AND_PORT_DEPENDENT and report.port_preserved is True


def test_what_the_probes_cannot_decide_stays_unknown() -> None:
    # Two ports of one IP agreeing cannot tell endpoint-independent from address-dependent.
    assert verdict(LOCAL, ["192.0.2.2"], [(R1, MAPPED), (R1_PORT2, MAPPED)]).verdict == UNKNOWN
    # Another IP disagreeing, the same IP's other port untested: address-dependent or stricter.
    assert verdict(LOCAL, ["192.0.2.2"], [(R1, MAPPED), (R2, ("203.0.113.10", 9))]).verdict == UNKNOWN
    # Nobody answered.
    nothing = verdict(LOCAL, ["192.0.2.2"], [(R1, None), (R2, None)])
    assert nothing.verdict == UNKNOWN and nothing.port_preserved is None
