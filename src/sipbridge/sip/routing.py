"""Where SIP messages go over UDP: RFC 3261 §18.2.1/§18.2.2 with RFC 3581 rport, sans-IO."""

from __future__ import annotations

from .headers import Via, parse_via
from .message import SipRequest

Address = tuple[str, int]


def stamp_received(request: SipRequest, source: Address) -> None:
    """Record the packet's source in the top Via: ``received`` when it differs, ``rport`` when asked."""
    values = request.headers.get_all("Via")
    if not values:
        return
    top = parse_via(values[0])
    host, port = source
    changed = False
    if "rport" in top.params and top.params["rport"] is None:
        top.params["rport"] = str(port)
        top.params["received"] = host
        changed = True
    elif top.host.strip("[]") != host:
        top.params["received"] = host
        changed = True
    if changed:
        request.headers.remove("Via")
        for value in [str(top), *values[1:]]:
            request.headers.add("Via", value)


def response_destination(via: Via) -> Address:
    """Where a response with this top Via goes over an unreliable transport (§18.2.2, RFC 3581 §4).

    ``maddr`` is not honoured: it would let a request name a third party to receive our responses
    and their retransmissions (a reflection attack). The address is the one the request came from
    (``received``, which ``stamp_received`` sets whenever the sent-by host differs from it).
    """
    default_port = via.port or 5060
    received = via.params.get("received")
    rport = via.params.get("rport")
    host = (received or via.host).strip("[]")
    if rport and rport.isdigit():
        return host, int(rport)
    return host, default_port
