"""TLS certificates that carry a node's Ed25519 key, and the NodeId a peer's certificate proves.

Rules (spec/protocol.md §8, decision: mutual TLS): each node presents a self-signed certificate
for its own Ed25519 key. Nothing about the certificate is trusted but its key: aioquic checks the
handshake signature (CertificateVerify) against that key even with verification off, so the key
in the certificate is a key the peer holds, and that key is the peer's NodeId.
"""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import NameOID

from tomproto.errors import IdentityError, PeerAuthenticationError
from tomproto.identity import Identity, NodeId

__all__ = ["node_certificate", "node_id_of_certificate"]

# A fixed, wide validity: expiry means nothing for a self-signed key certificate, and a fixed
# window keeps a wrong clock on a field device from breaking the handshake.
_NOT_BEFORE = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)
_NOT_AFTER = datetime.datetime(9999, 12, 31, tzinfo=datetime.UTC)


def node_certificate(identity: Identity) -> tuple[x509.Certificate, ed25519.Ed25519PrivateKey]:
    """A self-signed certificate for the identity's Ed25519 key, and that key."""
    private_key = ed25519.Ed25519PrivateKey.from_private_bytes(identity.seed)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identity.node_id.hex)])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private_key.public_key())
        .serial_number(int.from_bytes(identity.node_id.raw[:16], "big") >> 1 or 1)
        .not_valid_before(_NOT_BEFORE)
        .not_valid_after(_NOT_AFTER)
        .sign(private_key, algorithm=None)
    )
    return certificate, private_key


def node_id_of_certificate(certificate: x509.Certificate | None) -> NodeId:
    """The NodeId whose key the certificate holds. The certificate comes from the peer, so what is
    wrong with it is the peer's fault: PeerAuthenticationError (a RemoteError)."""
    if certificate is None:
        raise PeerAuthenticationError("the peer presented no certificate")
    public_key = certificate.public_key()
    if not isinstance(public_key, ed25519.Ed25519PublicKey):
        raise PeerAuthenticationError("the peer's certificate does not hold an Ed25519 key")
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    try:
        return NodeId.from_bytes(raw)
    except IdentityError as error:
        raise PeerAuthenticationError(f"the peer's key is not a NodeId: {error}") from None
