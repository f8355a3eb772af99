"""A deterministic simulated network on a virtual clock, for driving sans-IO machines in tests.

Hosts (anything with receive_datagram / handle_timer / next_deadline / datagrams_to_send) sit at
addresses, some behind NATs; links between sites delay, jitter, lose and duplicate; partitions cut
sites apart for a while. One seed fixes every draw, no socket is opened and nothing sleeps:
a run of virtual seconds takes milliseconds. Rules of each part are in its module: clock,
network, links, nat, partitions, accounting, hosts, randomness.
"""

from tests.sim.accounting import FINAL_FATES, Counters, Fate, TraceEntry
from tests.sim.clock import (
    DEFAULT_MAX_STEPS,
    DEFAULT_MAX_STEPS_AT_ONE_TIME,
    ScheduledCall,
    Scheduler,
)
from tests.sim.errors import (
    AddressInUse,
    PortsExhausted,
    SimulationError,
    StepBudgetExhausted,
    VirtualTimeLimitReached,
)
from tests.sim.hosts import Address, Host, MachineHost, OutgoingDatagram, SweptMachine
from tests.sim.links import DEFAULT_IMPAIRMENT, Impairment
from tests.sim.nat import (
    DEFAULT_MAPPING_TIMEOUT_S,
    EIM_ADF,
    EIM_APDF,
    EIM_EIF,
    SYMMETRIC,
    Filtering,
    Inbound,
    Mapping,
    Nat,
    NatBehaviour,
)
from tests.sim.network import DEFAULT_TIMER_RESOLUTION_S, SimNetwork, Tap
from tests.sim.partitions import Partition
from tests.sim.randomness import seeded_aioquic

__all__ = [
    "DEFAULT_IMPAIRMENT",
    "DEFAULT_MAPPING_TIMEOUT_S",
    "DEFAULT_MAX_STEPS",
    "DEFAULT_MAX_STEPS_AT_ONE_TIME",
    "DEFAULT_TIMER_RESOLUTION_S",
    "EIM_ADF",
    "EIM_APDF",
    "EIM_EIF",
    "FINAL_FATES",
    "SYMMETRIC",
    "Address",
    "AddressInUse",
    "Counters",
    "Fate",
    "Filtering",
    "Host",
    "Impairment",
    "Inbound",
    "MachineHost",
    "Mapping",
    "Nat",
    "NatBehaviour",
    "OutgoingDatagram",
    "Partition",
    "PortsExhausted",
    "ScheduledCall",
    "Scheduler",
    "SimNetwork",
    "SimulationError",
    "StepBudgetExhausted",
    "SweptMachine",
    "Tap",
    "TraceEntry",
    "VirtualTimeLimitReached",
    "seeded_aioquic",
]
