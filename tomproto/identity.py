"""Node identity: Ed25519 keys, NodeIds and the identity file.

Rules (spec/protocol.md §1):
- NodeId = the 32-byte Ed25519 public key; written as 64 lowercase hex characters. Parsers also
  accept 52-character unpadded base32 in any case; uppercase hex is refused; the bytes must be a
  valid Ed25519 point.
- NodeIds order by their bytes, which is the order of their hex strings.
- The identity file is exactly the 32-byte seed, created with mode 0600 and its parent directories.
"""

from __future__ import annotations

import base64
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import total_ordering
from pathlib import Path

import nacl.bindings as sodium
from nacl.exceptions import CryptoError as SodiumError

from tomproto.errors import IdentityError

__all__ = [
    "NODE_ID_BYTES",
    "SEED_BYTES",
    "SIGNATURE_BYTES",
    "NodeId",
    "Identity",
    "load_identity",
    "create_identity_file",
    "load_or_create_identity",
    "exposure_warning",
    "verify_signature",
]

NODE_ID_BYTES = 32
SEED_BYTES = 32
SIGNATURE_BYTES = 64
_LOWER_HEX_64 = re.compile(r"[0-9a-f]{64}")
_BASE32_52 = re.compile(r"[A-Za-z2-7]{52}")


@total_ordering
@dataclass(frozen=True, slots=True)
class NodeId:
    """A node's public key. Construct with `NodeId.parse` (text) or `NodeId.from_bytes`."""

    raw: bytes

    @classmethod
    def from_bytes(cls, raw: bytes) -> NodeId:
        if len(raw) != NODE_ID_BYTES:
            raise IdentityError(f"a NodeId is {NODE_ID_BYTES} bytes, got {len(raw)}")
        if not sodium.crypto_core_ed25519_is_valid_point(raw):
            raise IdentityError("not a valid Ed25519 public key (the NodeId is not a curve point)")
        return cls(raw)

    @classmethod
    def parse(cls, text: str) -> NodeId:
        """Parse 64 lowercase hex characters or 52 unpadded base32 characters (any case)."""
        text = text.strip()
        if _LOWER_HEX_64.fullmatch(text):
            return cls.from_bytes(bytes.fromhex(text))
        if len(text) == 64 and re.fullmatch(r"[0-9a-fA-F]{64}", text):
            raise IdentityError("NodeId hex must be lowercase")
        if _BASE32_52.fullmatch(text):
            return cls.from_bytes(base64.b32decode(text.upper() + "===="))
        raise IdentityError(
            f"not a NodeId: expected 64 lowercase hex characters or 52 base32 characters, "
            f"got {len(text)} characters"
        )

    @property
    def hex(self) -> str:
        return self.raw.hex()

    @property
    def base32(self) -> str:
        """Lowercase unpadded base32, the other accepted spelling."""
        return base64.b32encode(self.raw).decode("ascii").rstrip("=").lower()

    def __str__(self) -> str:
        return self.hex

    def __repr__(self) -> str:
        return f"NodeId({self.hex!r})"

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, NodeId):
            return NotImplemented
        return self.raw < other.raw


@dataclass(frozen=True, slots=True)
class Identity:
    """An Ed25519 key pair. The secret is the 32-byte seed; the public key is the NodeId."""

    seed: bytes = field(repr=False)
    node_id: NodeId
    # libsodium's 64-byte secret key (seed || public key) and the X25519 secret derived from it:
    # both are used on every envelope, so they are computed once.
    _signing_secret: bytes = field(repr=False, compare=False)
    _x25519_secret: bytes = field(repr=False, compare=False)

    @classmethod
    def from_seed(cls, seed: bytes) -> Identity:
        if len(seed) != SEED_BYTES:
            raise IdentityError(f"an Ed25519 seed is {SEED_BYTES} bytes, got {len(seed)}")
        public, secret = sodium.crypto_sign_seed_keypair(seed)
        return cls(
            seed=bytes(seed),
            node_id=NodeId(public),
            _signing_secret=secret,
            _x25519_secret=sodium.crypto_sign_ed25519_sk_to_curve25519(secret),
        )

    @classmethod
    def generate(cls, random_bytes: Callable[[int], bytes] = os.urandom) -> Identity:
        return cls.from_seed(random_bytes(SEED_BYTES))

    def sign(self, message: bytes) -> bytes:
        """The 64-byte detached Ed25519 signature of `message`."""
        return sodium.crypto_sign(message, self._signing_secret)[:64]

    @property
    def x25519_secret(self) -> bytes:
        """The X25519 secret matching this node's Ed25519 key (for end-to-end decryption)."""
        return self._x25519_secret


def verify_signature(signature: bytes, message: bytes, node_id_raw: bytes) -> bool:
    """Whether `signature` is the Ed25519 signature of `message` by the key `node_id_raw`.

    The one verifier of the package: whatever comes from the network (a short signature, a key
    of the wrong length or off the curve) is a False, never an exception."""
    if len(signature) != SIGNATURE_BYTES:  # else libsodium would take message bytes as signature
        return False
    try:
        sodium.crypto_sign_open(signature + message, node_id_raw)
    except (SodiumError, ValueError, TypeError):
        return False
    return True


def load_identity(path: Path) -> Identity:
    """Read an identity file: exactly 32 raw bytes, the Ed25519 seed."""
    try:
        seed = Path(path).read_bytes()
    except FileNotFoundError:
        raise IdentityError(f"identity file {path} does not exist") from None
    except OSError as error:
        raise IdentityError(f"cannot read identity file {path}: {error.strerror}") from None
    if len(seed) != SEED_BYTES:
        raise IdentityError(
            f"identity file {path} holds {len(seed)} bytes; an identity file is exactly "
            f"{SEED_BYTES} raw bytes (an Ed25519 seed)"
        )
    return Identity.from_seed(seed)


def create_identity_file(
    path: Path, *, overwrite: bool = False, random_bytes: Callable[[int], bytes] = os.urandom
) -> Identity:
    """Write a new identity to `path` (mode 0600, parent directories created).

    An existing file is only replaced with `overwrite=True`; the replacement is atomic, so an
    interrupted write never leaves a truncated identity behind.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise IdentityError(f"identity file {path} already exists (refusing to overwrite it)")
    identity = Identity.generate(random_bytes)
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(descriptor, "wb") as file:
                file.write(identity.seed)
            os.replace(temporary, path)
        finally:
            if temporary.exists():
                temporary.unlink()
    except OSError as error:
        raise IdentityError(f"cannot write identity file {path}: {error.strerror}") from None
    return identity


def exposure_warning(path: Path) -> str | None:
    """Why the identity file at `path` is at risk (readable by group or others), or None.

    Not an error: the file works, and on some systems (a NAS share) the owner cannot change it.
    But whoever can read it can act as this node, so the user must hear about it."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if not mode & (stat.S_IRGRP | stat.S_IROTH):
        return None
    return (
        f"identity file {path} can be read by group or others (mode {stat.S_IMODE(mode):04o}): whoever reads it "
        f"can act as this node; chmod 600 {path}"
    )


def load_or_create_identity(path: Path | None, warn: Callable[[str], None] | None = None) -> Identity:
    """The identity in `path`, created there when missing; an ephemeral one without a path.

    `warn` is told when an existing file can be read by others (`exposure_warning`)."""
    if path is None:
        return Identity.generate()
    if Path(path).exists():
        identity = load_identity(path)
        warning = exposure_warning(path)
        if warning is not None and warn is not None:
            warn(warning)
        return identity
    return create_identity_file(path)
