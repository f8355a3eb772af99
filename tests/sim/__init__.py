"""A deterministic simulated network on a virtual clock, for driving sans-IO machines in tests.

Hosts (anything with receive_datagram / handle_timer / next_deadline / datagrams_to_send) sit at
addresses, some behind NATs; links between sites delay, jitter, lose and duplicate; partitions cut
sites apart for a while. One seed fixes every draw, no socket is opened and nothing sleeps:
a run of virtual seconds takes milliseconds. Rules of each part are in its module: clock,
network, links, nat, partitions, accounting, hosts, randomness.
"""

from tests.sim.clock import DEFAULT_MAX_STEPS, ScheduledCall, Scheduler
from tests.sim.errors import (
    AddressInUse,
    PortsExhausted,
    SimulationError,
    StepBudgetExhausted,
    VirtualTimeLimitReached,
)

__all__ = [
    "DEFAULT_MAX_STEPS",
    "AddressInUse",
    "PortsExhausted",
    "ScheduledCall",
    "Scheduler",
    "SimulationError",
    "StepBudgetExhausted",
    "VirtualTimeLimitReached",
]
