"""Seeded randomness for aioquic: connection ids, tokens, TLS randoms and key shares.

aioquic's sans-IO QuicConnection draws from `os.urandom` (connection ids, stateless reset tokens,
path challenges: aioquic.quic.connection; version negotiation and retry: aioquic.quic.packet,
aioquic.quic.retry), TLS randoms and session tickets (aioquic.tls: `os.urandom`) and key shares
(aioquic.tls: `x25519.X25519PrivateKey.generate()`, `x448.X448PrivateKey.generate()`,
`ec.generate_private_key(curve)`). It looks those names up in its own modules at call time, so
`seeded_aioquic` swaps the module attributes `os`, `x25519`, `x448` and `ec` of those modules for
look-alikes that draw from the given function, and puts the originals back on exit, even when the
body raises. Everything else those look-alikes are asked for is the real module's.

Ed25519 signatures are deterministic, so with Ed25519 certificates and a seeded clock two runs of
a handshake are byte-identical. (ECDSA or RSA-PSS certificates would still sign with fresh
randomness: use Ed25519 in simulations.)
"""

from __future__ import annotations

import contextlib
import os
import types
from collections.abc import Callable, Iterator

import aioquic.quic.connection
import aioquic.quic.packet
import aioquic.quic.retry
import aioquic.tls
from cryptography.hazmat.primitives.asymmetric import ec, x448, x25519

__all__ = ["seeded_aioquic"]

RandomBytes = Callable[[int], bytes]


def _look_alike(real: types.ModuleType, **overrides: object) -> types.ModuleType:
    shim = types.ModuleType(f"{real.__name__} (seeded)")
    shim.__dict__.update(vars(real))
    shim.__dict__.update(overrides)
    return shim


def _seeded_os(random_bytes: RandomBytes) -> types.ModuleType:
    return _look_alike(os, urandom=random_bytes)


def _seeded_keys(
    module: types.ModuleType, class_name: str, key_bytes: int, random_bytes: RandomBytes
) -> types.ModuleType:
    """`module` whose private key class `class_name` generates its keys from `random_bytes`."""
    real = getattr(module, class_name)

    class SeededPrivateKey:
        from_private_bytes = staticmethod(real.from_private_bytes)

        @staticmethod
        def generate() -> object:
            return real.from_private_bytes(random_bytes(key_bytes))

    return _look_alike(module, **{class_name: SeededPrivateKey})


def _seeded_ec(random_bytes: RandomBytes) -> types.ModuleType:
    def generate_private_key(curve: ec.EllipticCurve, backend: object = None) -> ec.EllipticCurvePrivateKey:
        # A scalar below 2^(bits-1) is below the group order of every NIST prime curve (their
        # orders exceed 2^(bits-1)); +1 keeps it above zero.
        bits = curve.key_size
        drawn = int.from_bytes(random_bytes((bits + 7) // 8), "big")
        return ec.derive_private_key(drawn % (1 << (bits - 1)) + 1, curve)

    return _look_alike(ec, generate_private_key=generate_private_key)


@contextlib.contextmanager
def seeded_aioquic(random_bytes: RandomBytes) -> Iterator[None]:
    """While active, every random draw aioquic makes comes from `random_bytes(n)`."""
    patches: list[tuple[types.ModuleType, str, types.ModuleType]] = [
        (aioquic.quic.connection, "os", _seeded_os(random_bytes)),
        (aioquic.quic.packet, "os", _seeded_os(random_bytes)),
        (aioquic.quic.retry, "os", _seeded_os(random_bytes)),
        (aioquic.tls, "os", _seeded_os(random_bytes)),
        (aioquic.tls, "x25519", _seeded_keys(x25519, "X25519PrivateKey", 32, random_bytes)),
        (aioquic.tls, "x448", _seeded_keys(x448, "X448PrivateKey", 56, random_bytes)),
        (aioquic.tls, "ec", _seeded_ec(random_bytes)),
    ]
    originals = [(module, name, getattr(module, name)) for module, name, _ in patches]
    try:
        for module, name, replacement in patches:
            setattr(module, name, replacement)
        yield
    finally:
        for module, name, original in reversed(originals):
            setattr(module, name, original)
