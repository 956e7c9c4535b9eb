"""Who is on the other end of the connection: the client address the audit trail and the
pre-authentication limit use.

The peer address of the TCP connection is the client, unless the peer is one of the configured
trusted proxies (``NOETL_GATEWAY_TRUSTED_PROXIES``: addresses or networks, comma-separated, e.g.
``10.0.0.5,192.168.0.0/24``). Only then is ``X-Forwarded-For`` read, right to left, skipping the
trusted proxies; the first address that is not one is the client. Any other peer's
``X-Forwarded-For`` is ignored, so a client cannot choose the address it is audited and limited by.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def networks(setting: str) -> tuple[Network, ...]:
    """The trusted proxies of a ``NOETL_GATEWAY_TRUSTED_PROXIES`` value; ValueError when malformed."""
    found = []
    for part in (p.strip() for p in setting.split(",")):
        if part:
            found.append(ipaddress.ip_network(part, strict=False))
    return tuple(found)


def address(peer: str | None, forwarded_for: str | None, trusted: Sequence[Network]) -> str:
    """The client address of a request from ``peer`` carrying ``forwarded_for`` (see the module doc)."""
    if peer is None:
        return "unknown"
    if not forwarded_for or not _trusted(peer, trusted):
        return peer
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, trusted):
            return hop if _parses(hop) else peer
    return hops[0] if hops and _parses(hops[0]) else peer


def _trusted(host: str, trusted: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


def _parses(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
