"""Envelope framing on QUIC streams (spec/protocol.md §4), sans-IO.

Rules: one bidirectional stream per envelope, carrying a 4-byte big-endian length, the bytes, then
FIN. The sender refuses a frame over FRAME_CAP_BYTES; the receiver refuses a larger length prefix
as soon as the 4 bytes are in, before reading any body, and refuses data past the announced length.

The receiver answers each frame on the same stream's other direction: an empty FIN when its node
accepted it, or a RESET_STREAM whose application error code says why not (`STREAM_MALFORMED` for a
frame the framing refused, a `FrameRefusal` for a well-formed frame the node refused). The codes
share one space, so a FrameRefusal never reuses STREAM_MALFORMED.
"""

from __future__ import annotations

import enum
import struct

from tomproto.errors import LocalError

__all__ = ["FRAME_CAP_BYTES", "STREAM_MALFORMED", "FrameError", "FrameRefusal", "frame", "FrameReader"]

FRAME_CAP_BYTES = 1024 * 1024
_LENGTH = struct.Struct(">I")
# Application error code (STOP_SENDING, RESET_STREAM) on a stream whose frame was malformed.
STREAM_MALFORMED = 0x1


class FrameError(str, enum.Enum):
    """Why a stream was refused (also the reason counted in metrics)."""

    too_large = "frame_too_large"
    overrun = "frame_overrun"
    truncated = "frame_truncated"


class FrameRefusal(enum.IntEnum):
    """Why a node refused a well-formed frame it had held: the application error code of the
    RESET_STREAM on its direction of the frame's stream, which the sender reads back."""

    rejected = 0x2  # the envelope was refused (bad signature, wrong recipient, replay, ...)
    throttled = 0x3  # too much from this peer now; the same envelope may be sent again later
    unavailable = 0x4  # the node is shutting down (or cannot take it for now), not the envelope's fault


def frame(data: bytes) -> bytes:
    if len(data) > FRAME_CAP_BYTES:
        raise LocalError(f"frame of {len(data)} bytes exceeds the {FRAME_CAP_BYTES}-byte cap")
    return _LENGTH.pack(len(data)) + data


class FrameReader:
    """Collects one frame from one stream's data events."""

    __slots__ = ("_buffer", "_length", "done")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._length: int | None = None
        self.done = False

    def feed(self, data: bytes, end_stream: bool) -> bytes | FrameError | None:
        """The complete frame, a FrameError (reset the stream), or None (need more data)."""
        if self.done:
            return FrameError.overrun if data else None
        self._buffer += data
        if self._length is None and len(self._buffer) >= 4:
            (self._length,) = _LENGTH.unpack_from(self._buffer)
            if self._length > FRAME_CAP_BYTES:
                self.done = True
                return FrameError.too_large
            del self._buffer[:4]
        if self._length is not None:
            if len(self._buffer) > self._length:
                self.done = True
                return FrameError.overrun
            if len(self._buffer) == self._length:
                self.done = True
                return bytes(self._buffer)
        if end_stream:
            self.done = True
            return FrameError.truncated
        return None
