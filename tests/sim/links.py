"""Link impairments: what the path from one site to another does to each datagram.

Rules, applied when a datagram is sent (all draws from the network's one seeded Random, in this
order: loss, duplication, then one delay per copy):
- lost with probability `loss`; a lost datagram is never duplicated;
- otherwise duplicated with probability `duplicate` (two copies, each delayed on its own);
- each copy arrives after `delay_s` plus a uniform draw in [0, `jitter_s`];
- with `reorder=False` (the default) a copy never arrives before the copy sent before it on the
  same flow (sender address, destination address): jitter then spreads arrivals but keeps their
  order; with `reorder=True` a later copy may overtake an earlier one.
Impairments are per direction: the link from site A to site B is configured apart from B to A.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["DEFAULT_IMPAIRMENT", "Impairment", "LinkTable", "draw_copies", "draw_delay_s"]


@dataclass(frozen=True, slots=True)
class Impairment:
    """What one direction of a path does to datagrams (probabilities in [0, 1])."""

    delay_s: float = 0.010
    jitter_s: float = 0.0
    loss: float = 0.0
    duplicate: float = 0.0
    reorder: bool = False

    def __post_init__(self) -> None:
        if self.delay_s < 0 or self.jitter_s < 0:
            raise ValueError("delay_s and jitter_s must not be negative")
        for name, probability in (("loss", self.loss), ("duplicate", self.duplicate)):
            if not 0.0 <= probability <= 1.0:
                raise ValueError(f"{name} is a probability, got {probability}")


# What a link does unless told otherwise: 10 ms one way, nothing lost, nothing duplicated.
DEFAULT_IMPAIRMENT = Impairment()


class LinkTable:
    """The impairment of each (source site, destination site) direction, and a default."""

    def __init__(self, default: Impairment) -> None:
        self.default = default
        self._links: dict[tuple[str, str], Impairment] = {}

    def set(
        self, source_site: str, destination_site: str, forward: Impairment, backward: Impairment | None = None
    ) -> None:
        """Impair source → destination with `forward`, and the way back with `backward`
        (the same as `forward` when not given)."""
        self._links[(source_site, destination_site)] = forward
        self._links[(destination_site, source_site)] = forward if backward is None else backward

    def clear(self, source_site: str, destination_site: str) -> None:
        """Both directions between the two sites fall back to the default."""
        self._links.pop((source_site, destination_site), None)
        self._links.pop((destination_site, source_site), None)

    def between(self, source_site: str | None, destination_site: str | None) -> Impairment:
        if source_site is None or destination_site is None:
            return self.default
        return self._links.get((source_site, destination_site), self.default)


def draw_copies(impairment: Impairment, rng: random.Random) -> int:
    """How many copies of one datagram the link carries: 0 (lost), 1 or 2 (duplicated)."""
    if impairment.loss and rng.random() < impairment.loss:
        return 0
    if impairment.duplicate and rng.random() < impairment.duplicate:
        return 2
    return 1


def draw_delay_s(impairment: Impairment, rng: random.Random) -> float:
    if impairment.jitter_s:
        return impairment.delay_s + rng.uniform(0.0, impairment.jitter_s)
    return impairment.delay_s
