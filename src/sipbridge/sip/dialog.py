"""Dialog state (RFC 3261 §12), sans-IO: identifiers, route set, CSeq, and in-dialog requests."""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import SipParseError
from .headers import parse_name_addr
from .message import Headers, SipRequest, SipResponse
from .uri import SipUri, parse_uri

DialogId = tuple[str, str, str]
# RFC 3261 Table 3: a BYE or CANCEL carries no Contact (it refreshes no target).
NO_CONTACT = frozenset({"BYE", "CANCEL"})


@dataclass
class Dialog:
    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: str
    remote_uri: str
    remote_target: str
    local_contact: str
    route_set: list[str] = field(default_factory=list)
    local_cseq: int = 0
    remote_cseq: int = 0

    @classmethod
    def from_incoming_invite(cls, invite: SipRequest, local_tag: str, local_contact: str) -> Dialog:
        """The UAS side of a dialog created by our 2xx to ``invite`` (§12.1.1)."""
        contacts = invite.headers.get_all("Contact")
        remote_target = str(parse_name_addr(contacts[0]).uri) if contacts else str(invite.from_.uri)
        return cls(
            call_id=invite.call_id,
            local_tag=local_tag,
            remote_tag=invite.from_.tag or "",
            local_uri=str(invite.to.uri),
            remote_uri=str(invite.from_.uri),
            remote_target=remote_target,
            local_contact=local_contact,
            route_set=list(invite.headers.get_all("Record-Route")),
            local_cseq=0,
            remote_cseq=invite.cseq[0],
        )

    @classmethod
    def from_outgoing_invite(cls, invite: SipRequest, response: SipResponse) -> Dialog:
        """The UAC side of a dialog created by a 2xx (or 1xx with a tag) to our ``invite`` (§12.1.2)."""
        contacts = response.headers.get_all("Contact")
        remote_target = str(parse_name_addr(contacts[0]).uri) if contacts else str(invite.request_uri)
        return cls(
            call_id=invite.call_id,
            local_tag=invite.from_.tag or "",
            remote_tag=response.to.tag or "",
            local_uri=str(invite.from_.uri),
            remote_uri=str(invite.to.uri),
            remote_target=remote_target,
            local_contact=invite.headers.get("Contact") or "",
            route_set=list(reversed(response.headers.get_all("Record-Route"))),
            local_cseq=invite.cseq[0],
            remote_cseq=0,
        )

    @property
    def id(self) -> DialogId:
        return (self.call_id, self.local_tag, self.remote_tag)

    def next_hop(self) -> tuple[str, int, str | None]:
        """Where requests in this dialog go: the first loose route, else the remote target.

        The third item is the transport the URI names (``transport`` parameter, or TLS for sips),
        None when it leaves the choice to us.
        """
        uri = parse_name_addr(self.route_set[0]).uri if self.route_set else parse_uri(self.remote_target)
        host, port = uri.host_port
        maddr = uri.params.get("maddr")
        transport = (uri.params.get("transport") or "").upper() or ("TLS" if uri.scheme == "sips" else None)
        return (maddr or host).strip("[]"), port, transport

    def peer_hosts(self) -> list[str]:
        """The hosts the peer's requests may come from besides the INVITE's source: the first hop of
        the route set (a record-routing proxy) and the remote target."""
        hosts = []
        for value, parse in ((self.remote_target, parse_uri), (self.route_set[:1], _first_route_uri)):
            try:
                uri = parse(value)
            except (SipParseError, IndexError):
                continue
            hosts.append(uri.host_port[0].strip("[]"))
        return hosts

    def accept_remote_cseq(self, cseq: int) -> bool:
        """§12.2.2: a request with a lower CSeq than the last one is out of order (500)."""
        if cseq < self.remote_cseq:
            return False
        self.remote_cseq = cseq
        return True

    def update_remote_target(self, request: SipRequest) -> None:
        """A target refresh request (re-INVITE, UPDATE) may move the peer (§12.2.2)."""
        contacts = request.headers.get_all("Contact")
        if contacts:
            self.remote_target = str(parse_name_addr(contacts[0]).uri)

    def create_request(self, method: str, cseq: int | None = None) -> SipRequest:
        """A request in this dialog; the transport layer adds the Via. ``cseq`` reuses a number (ACK)."""
        if cseq is None:
            self.local_cseq += 1
        headers = Headers()
        headers.add("Max-Forwards", "70")
        for route in self.route_set:
            headers.add("Route", route)
        headers.add("From", f"<{self.local_uri}>;tag={self.local_tag}")
        headers.add("To", f"<{self.remote_uri}>;tag={self.remote_tag}")
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", f"{cseq if cseq is not None else self.local_cseq} {method}")
        if method not in NO_CONTACT:
            headers.add("Contact", self.local_contact)
        return SipRequest(method=method, uri=self.remote_target, headers=headers)


def _first_route_uri(route_set: list[str]) -> SipUri:
    return parse_name_addr(route_set[0]).uri
