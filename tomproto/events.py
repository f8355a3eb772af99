"""Typed events to any number of subscribers: no one replaces another's callback.

A subscriber names the event types it wants (all of them by default) and gets a `Subscription`
it closes when done. Subscribers are called in the order they subscribed, synchronously, while the
event is fresh (a delivery's arrival time, a path switch's instant). One that raises is counted in
`failures` and logged with its traceback, and does not stop the others: a bug in a campaign's
observer must not take the node down, nor go unseen.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

__all__ = ["EventHub", "Subscription"]

Handler = Callable[[Any], None]
_log = logging.getLogger("tomproto.events")


class Subscription:
    __slots__ = ("_hub", "handler", "kinds")

    def __init__(self, hub: EventHub, handler: Handler, kinds: tuple[type, ...]) -> None:
        self._hub = hub
        self.handler = handler
        self.kinds = kinds

    def close(self) -> None:
        self._hub._remove(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class EventHub:
    def __init__(self) -> None:
        self._subscriptions: list[Subscription] = []
        self.failures = 0

    def subscribe(self, handler: Handler, *kinds: type) -> Subscription:
        """Call `handler(event)` for every event of one of `kinds` (every event if none given)."""
        subscription = Subscription(self, handler, kinds)
        self._subscriptions = [*self._subscriptions, subscription]  # a copy: publish may iterate
        return subscription

    def publish(self, event: object) -> None:
        for subscription in self._subscriptions:
            if subscription.kinds and not isinstance(event, subscription.kinds):
                continue
            try:
                subscription.handler(event)
            except Exception:  # one observer's bug must not stop the node
                self.failures += 1
                _log.exception("an event subscriber (%r) failed on %r", subscription.handler, event)

    def wants(self, kind: type) -> bool:
        """Whether some subscriber takes events of `kind` (by name: a catch-all does not count)."""
        return any(kind in subscription.kinds for subscription in self._subscriptions)

    def _remove(self, subscription: Subscription) -> None:
        self._subscriptions = [s for s in self._subscriptions if s is not subscription]
