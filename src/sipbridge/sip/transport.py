"""What the UA core sees of a transport: a flow to one peer over UDP, TCP or TLS (RFC 3261 §18)."""

from __future__ import annotations

from typing import Protocol

Address = tuple[str, int]

RELIABLE = frozenset({"TCP", "TLS"})
DEFAULT_PORTS = {"UDP": 5060, "TCP": 5060, "TLS": 5061}
# §18.1.1: a request within 200 bytes of a 1500-byte path MTU goes over a congestion-controlled
# transport instead.
UDP_SIZE_LIMIT = 1300


class Flow(Protocol):
    """A way back to one peer: a UDP socket and address, or one TCP/TLS connection."""

    @property
    def transport(self) -> str: ...

    @property
    def remote(self) -> Address: ...

    @property
    def reliable(self) -> bool: ...

    @property
    def closed(self) -> bool: ...

    def send(self, data: bytes) -> None: ...


class DatagramSender(Protocol):
    def send(self, data: bytes, addr: Address) -> None: ...


class UdpFlow:
    """One peer address on the shared UDP socket."""

    transport = "UDP"
    reliable = False
    closed = False

    def __init__(self, socket: DatagramSender, remote: Address) -> None:
        self._socket = socket
        self.remote = remote

    def send(self, data: bytes) -> None:
        self._socket.send(data, self.remote)

    def __repr__(self) -> str:
        return f"UdpFlow({self.remote[0]}:{self.remote[1]})"
