"""tomproto: a ToM protocol node in Python (identity, wire format, crypto, transport, relay)."""

from tomproto.errors import DecodeError, IdentityError, LocalError, RemoteError, TomError
from tomproto.identity import Identity, NodeId

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "TomError",
    "LocalError",
    "RemoteError",
    "DecodeError",
    "IdentityError",
    "Identity",
    "NodeId",
]
