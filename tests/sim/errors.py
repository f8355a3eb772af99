"""What a simulation raises: always a SimulationError, so a test can tell the world's failure
from the failure of the code under test."""

from __future__ import annotations

__all__ = ["AddressInUse", "PortsExhausted", "SimulationError", "StepBudgetExhausted", "VirtualTimeLimitReached"]


class SimulationError(Exception):
    """Base of the errors a simulation raises."""


class StepBudgetExhausted(SimulationError):
    """The scheduler ran as many calls as its budget allows (most likely a livelock)."""


class VirtualTimeLimitReached(SimulationError):
    """`run_while` reached its virtual time limit with the predicate still true."""


class AddressInUse(SimulationError):
    """A host, NAT or address was attached twice."""


class PortsExhausted(SimulationError):
    """A NAT has no free public port left."""
