"""The exceptions of tomproto, split by who broke the rules.

`LocalError` means the caller misused the API (a bad argument, a file that is not an identity);
`RemoteError` means a peer sent something the protocol does not allow. Code that handles network
input catches `RemoteError` and turns it into a counted rejection; it never lets it escape the node.
"""

from __future__ import annotations

__all__ = [
    "TomError",
    "LocalError",
    "RemoteError",
    "DecodeError",
    "IdentityError",
    "CryptoError",
]


class TomError(Exception):
    """Base of every exception raised by tomproto."""


class LocalError(TomError):
    """The caller misused the API or gave bad local input (arguments, files)."""


class RemoteError(TomError):
    """Something received from the network breaks the protocol."""


class DecodeError(RemoteError):
    """Bytes that are not a valid encoding of the expected wire value.

    `reason` is a short stable code (for metrics and events); the message says what was wrong.
    """

    def __init__(self, message: str, reason: str = "malformed") -> None:
        super().__init__(message)
        self.reason = reason


class IdentityError(LocalError):
    """A NodeId string or an identity file that cannot be used."""


class CryptoError(RemoteError):
    """A signature that does not verify, or a ciphertext that does not open."""
