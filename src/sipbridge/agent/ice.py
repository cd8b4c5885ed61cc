"""Which local addresses aiortc offers as ICE host candidates on the agent leg.

aioice offers every interface address except loopback. For an agent on the same host that sends the
media over an external interface (and fails outright on a host with only loopback), so a loopback
agent URL gets loopback candidates; ``ice_host_addresses`` in the config overrides the choice.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from urllib.parse import urlparse

import aioice.ice

_aioice_default = aioice.ice.get_host_addresses
_chosen: list[str] | None = None


def use_host_addresses(addresses: Sequence[str] | None) -> None:
    """Offer exactly ``addresses`` from now on in this process; None restores aioice's choice."""
    global _chosen
    _chosen = list(addresses) if addresses else None
    aioice.ice.get_host_addresses = _host_addresses


def _host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    if _chosen is None:
        return _aioice_default(use_ipv4, use_ipv6)
    return [a for a in _chosen if (use_ipv6 if ":" in a else use_ipv4)]


def loopback_addresses_for(url_or_host: str) -> list[str] | None:
    """[that address] when the agent is reached over loopback, else None (every interface)."""
    host = urlparse(url_or_host).hostname if "://" in url_or_host else url_or_host.strip("[]")
    if host == "localhost":
        return ["127.0.0.1"]
    try:
        ip = ipaddress.ip_address(host or "")
    except ValueError:
        return None
    return [str(ip)] if ip.is_loopback else None
