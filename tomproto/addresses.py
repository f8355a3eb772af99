"""HOST:PORT as people write it ("203.0.113.7:7400", "[2001:db8::1]:7400", "localhost:7400")."""

from __future__ import annotations

__all__ = ["parse_host_port", "format_host_port", "HOST_PORT_FORM"]

HOST_PORT_FORM = "HOST:PORT, e.g. 127.0.0.1:7400 or [::1]:7400"


def parse_host_port(text: str) -> tuple[str, int]:
    """(host, port), or ValueError with a message that shows the accepted form."""
    text = text.strip()
    if text.startswith("["):
        host, separator, port_text = text[1:].partition("]:")
    else:
        host, separator, port_text = text.rpartition(":")
        if ":" in host:
            raise ValueError(f"invalid address {text!r}: put an IPv6 host in brackets ({HOST_PORT_FORM})")
    if not separator or not host or not port_text.isdigit():
        raise ValueError(f"invalid address {text!r}: expected {HOST_PORT_FORM}")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ValueError(f"invalid port {port} in {text!r}: ports are 0 to 65535")
    return host, port


def format_host_port(address: tuple[str, int]) -> str:
    host, port = address[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
