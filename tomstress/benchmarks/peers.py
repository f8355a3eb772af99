"""The far side of the ping benchmark, in its own process: four servers on loopback.

- a plain UDP echo;
- a bare aioquic server that echoes each stream (the same QUIC, certificates and ALPN as ours,
  without envelopes, crypto or our framing);
- a tom-stress responder (the whole stack);
- a sink node that counts the envelopes it opens, for the one-way rate, and answers a report
  request with the count so far and the time between the first and the last.

Prints one JSON line with the ports and NodeIds, then serves until stdin closes.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.asyncio.server import serve
from aioquic.quic import events

from tomproto.core.quic import TransportSettings, quic_configuration
from tomproto.identity import Identity
from tomproto.node import Node, ReceivedMessage
from tomstress.responder import Responder

REPORT_REQUEST = b"REPORT"


class UdpEcho(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, address: tuple[str, int]) -> None:
        self.transport.sendto(data, address)  # type: ignore[attr-defined]


class StreamEcho(QuicConnectionProtocol):
    """Echo every stream back on itself once it is complete."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._buffers: dict[int, bytearray] = {}

    def quic_event_received(self, event: events.QuicEvent) -> None:
        if isinstance(event, events.StreamDataReceived):
            buffer = self._buffers.setdefault(event.stream_id, bytearray())
            buffer += event.data
            if event.end_stream:
                self._quic.send_stream_data(event.stream_id, bytes(self._buffers.pop(event.stream_id)), end_stream=True)
                self.transmit()


class Sink:
    def __init__(self) -> None:
        self.node: Node | None = None
        self.count = 0
        self.first_ns = 0
        self.last_ns = 0

    def on_message(self, message: ReceivedMessage) -> None:
        if message.plaintext == REPORT_REQUEST:
            report = json.dumps({"count": self.count, "first_ns": self.first_ns, "last_ns": self.last_ns})
            assert self.node is not None  # noqa: S101
            self.node.send_message_nowait(message.sender, report.encode())
            return
        if self.count == 0:
            self.first_ns = message.received_ns
        self.count += 1
        self.last_ns = message.received_ns


async def main() -> None:
    loop = asyncio.get_running_loop()
    udp_transport, _ = await loop.create_datagram_endpoint(UdpEcho, local_addr=("127.0.0.1", 0))
    quic_identity = Identity.generate()
    configuration = quic_configuration(quic_identity, TransportSettings(), is_client=False)
    quic_server = await serve("127.0.0.1", 0, configuration=configuration, create_protocol=StreamEcho)
    responder_identity, sink_identity = Identity.generate(), Identity.generate()
    responder = await Responder.start(responder_identity, "127.0.0.1", 0)
    sink = Sink()
    sink.node = await Node.start(sink_identity, "127.0.0.1", 0)
    sink.node.events.subscribe(sink.on_message, ReceivedMessage)
    print(
        json.dumps(
            {
                "udp_port": udp_transport.get_extra_info("sockname")[1],
                "quic_port": quic_server._transport.get_extra_info("sockname")[1],  # type: ignore[union-attr]
                "responder_port": responder.node.endpoint.local_address[1],  # type: ignore[union-attr]
                "responder_id": responder_identity.node_id.hex,
                "sink_port": sink.node.endpoint.local_address[1],
                "sink_id": sink_identity.node_id.hex,
            }
        ),
        flush=True,
    )
    # Serve until the parent closes our stdin (or an hour, whichever comes first).
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    deadline = time.monotonic() + 3600
    while not reader.at_eof() and time.monotonic() < deadline:
        try:
            await asyncio.wait_for(reader.read(1024), 1.0)
        except TimeoutError:
            continue
    quic_server.close()
    await responder.close()
    await sink.node.close()


if __name__ == "__main__":
    asyncio.run(main())
