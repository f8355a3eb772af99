"""A userspace delayer for kernels without netem: packets wait in NFQUEUE for their delay.

    tom-stress lab delayer --queue N --delay 10ms [--jitter 2ms]   (inside a namespace; the lab starts it)

iptables sends each packet crossing a link to an NFQUEUE; this process holds it for the delay
(plus a uniform jitter sample) and then accepts it. Release times never go backwards within a
queue, so jitter delays packets without reordering them (netem reorders; a tunnel does not).
`--queue-bypass` on the rule lets traffic flow if the delayer dies. Needs the NetfilterQueue
package (libnetfilter-queue).

Its event loop waits in select(), not epoll: epoll's timeout is in whole milliseconds, so a
packet released while the loop already waits for an earlier one (a probe right behind an ack)
would leave up to 1 ms late, and more often for a burst of QUIC packets than for a lone ICMP
echo, which would bias the lab against the very traffic it measures.
"""

from __future__ import annotations

import asyncio
import random
import selectors
import signal
import subprocess
from typing import TYPE_CHECKING, Any

from tomstress.local import own_command

if TYPE_CHECKING:
    from tomstress.lab.session import LabSession

__all__ = ["start_delayers", "serve", "run_delayer"]

QUEUE_LENGTH = 4096


async def serve(queue_number: int, delay_s: float, jitter_s: float, seed: int) -> None:
    from netfilterqueue import NetfilterQueue  # optional dependency: the lab's delay only

    loop = asyncio.get_running_loop()
    rng = random.Random(seed)
    last_release = 0.0

    def hold(packet: Any) -> None:
        nonlocal last_release
        release = max(last_release, loop.time() + delay_s + (rng.uniform(-jitter_s, jitter_s) if jitter_s else 0.0))
        last_release = release
        loop.call_at(release, packet.accept)

    queue = NetfilterQueue()
    queue.bind(queue_number, hold, max_len=QUEUE_LENGTH)
    loop.add_reader(queue.get_fd(), lambda: queue.run(block=False))
    stopped = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopped.set)
    print("ready", flush=True)
    await stopped.wait()
    loop.remove_reader(queue.get_fd())
    queue.unbind()


def run_delayer(queue_number: int, delay_s: float, jitter_s: float, seed: int) -> None:
    with asyncio.Runner(loop_factory=lambda: asyncio.SelectorEventLoop(selectors.SelectSelector())) as runner:
        runner.run(serve(queue_number, delay_s, jitter_s, seed))


def start_delayers(session: LabSession) -> list[subprocess.Popen[str]]:
    """One delayer per direction of each side's public link; rules send packets to them."""
    impairments = session.impairments
    processes = []
    for index, (role, interface) in enumerate(session.links()):
        prefix = session.topology.exec_prefix(role)
        for offset, rule in ((0, ["-t", "mangle", "-A", "PREROUTING", "-i", interface]),
                             (1, ["-t", "mangle", "-A", "POSTROUTING", "-o", interface])):  # fmt: skip
            queue_number = 10 + 2 * index + offset
            process = subprocess.Popen(
                [*prefix, *own_command(), "lab", "delayer", "--queue", str(queue_number),
                 "--delay", f"{impairments.delay_s * 1000:g}ms", "--jitter", f"{impairments.jitter_s * 1000:g}ms",
                 "--seed", str(queue_number)],
                stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
            processes.append(process)
            assert process.stdout is not None  # noqa: S101
            if process.stdout.readline().strip() != "ready":
                raise RuntimeError("the delayer did not start (is NetfilterQueue installed?)")
            subprocess.run(
                [*prefix, "iptables", *rule, "-p", "all", "-j", "NFQUEUE", "--queue-num", str(queue_number),
                 "--queue-bypass"],
                check=True, capture_output=True, timeout=20,
            )  # fmt: skip
    return processes
