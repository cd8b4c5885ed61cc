"""The declarations of the SIP, TLS and REST API settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..sip.headers import TOKEN_RE
from .declare import setting
from .security import ApiKeys
from .values import (
    TEXT,
    ConfigError,
    ExistingFile,
    Flag,
    HostPort,
    IpAddress,
    Listen,
    ListOf,
    NameServer,
    Port,
    Positive,
    Value,
)


class HeaderName(Value):
    """A SIP header name (an RFC 3261 token), or a prefix of names ending in ``-``."""

    form = "a SIP header name, or a prefix ending in `-` (`X-`)"
    metavar = "NAME"

    def parse(self, raw: Any, name: str) -> str:
        text = str(raw).strip()
        if not TOKEN_RE.fullmatch(text):
            raise ConfigError(f"{name}: {text[:40]!r} is not a SIP header name")
        return text


FORWARD_HEADERS_HELP = (
    "Names (`User-to-User`) or prefixes ending in `-` (`X-`), case-insensitive. Credentials"
    " (`Authorization`, `Proxy-Authorization`, anything named like a secret, token or cookie) are"
    " never forwarded; values are cut to 256 characters (`User-to-User`: 1024), at most 32 headers."
)


@dataclass(frozen=True)
class SipSettings:
    """SIP and the REST API

    Where the bridge listens and what it advertises, SIP over TCP and TLS, SIP's timers, and the
    REST API's address and keys.
    """

    sip_listen: HostPort = setting(
        HostPort("0.0.0.0", 5060),
        Listen(),
        "SIP UDP (and TCP) address; RTP binds to the same host",
        flag=True,
    )
    sip_tcp: bool = setting(True, Flag(), "also listen for SIP over TCP on the same port")
    sip_tls_port: int = setting(
        5061, Port(), "SIP over TLS port, used when tls_cert_file and tls_key_file are set"
    )
    tls_cert_file: str | None = setting(
        None,
        ExistingFile(),
        "PEM certificate chain presented on the TLS port (TLS 1.2 or later)",
        more="Set together with `tls_key_file`.",
    )
    tls_key_file: str | None = setting(None, ExistingFile(), "PEM private key of tls_cert_file", secret=True)
    tls_ca_file: str | None = setting(
        None,
        ExistingFile(),
        "CAs trusted when we connect out over TLS (a proxy's certificate is verified)",
        shown_default="the system's store",
    )
    tls_verify: bool = setting(
        True,
        Flag(),
        "verify the certificate and host name of TLS peers we connect to",
        more="`false` is warned about at start-up: anyone on the path could pose as a trunk.",
    )
    forward_headers: tuple[str, ...] = setting(
        ("X-", "User-to-User"),
        ListOf(HeaderName()),
        "SIP headers of an inbound INVITE the agent is told (its first `call` event, and the call's"
        " `headers` on the API)",
        more=FORWARD_HEADERS_HELP,
    )
    dns_servers: tuple[HostPort, ...] = setting(
        (),
        ListOf(NameServer()),
        "DNS servers asked for a provider's NAPTR, SRV and address records",
        more="Used for a provider `address` (or `outbound_proxy`) that is a domain without a port,"
        " which is located by RFC 3263 ([providers.md](providers.md)).",
        shown_default="those of /etc/resolv.conf",
    )
    # Address written into Contact and SDP; None means the address the SIP socket is bound to
    # (or, when bound to a wildcard, the address the request arrived on).
    public_ip: str | None = setting(
        None,
        IpAddress(),
        "address to advertise in Via, Contact and SDP",
        more="SDP too unless `media_public_ip` is set; behind NAT set it to the public address."
        " Without it a wildcard bind advertises the address the kernel routes to the caller from,"
        " never `0.0.0.0`, and logs a warning when that is private and the caller is public.",
        flag=True,
        shown_default="the bound address",
    )
    media_public_ip: str | None = setting(
        None,
        IpAddress(),
        "address written in SDP, where callers send RTP",
        more="For media that leaves through another NAT or interface than signalling.",
        shown_default="public_ip",
    )
    # Loopback by default: an open call-placing API is how toll fraud starts.
    api_listen: HostPort = setting(
        HostPort("127.0.0.1", 8090),
        Listen(),
        "REST API address",
        more="A non-loopback address is refused unless API keys are set.",
        flag=True,
        table="api",
    )
    # Empty: no auth, and then the API must stay on loopback.
    api_keys: tuple[str, ...] = setting(
        (),
        ApiKeys(),
        "bearer keys required on every route but /health",
        more="Checked before the request body is read; never logged. Each must be 16+ visible ASCII"
        " characters (no blanks), hold at least 8 different characters and not be a shorter string"
        " repeated (`aaaaaaaaaaaaaaaa`, `1234567812345678` are refused), e.g. `openssl rand -hex 24`;"
        " a value of blanks only is refused too.",
        secret=True,
        table="api",
    )
    user_agent: str = setting(
        "sipbridge", TEXT, "the User-Agent and Server headers we send, and the user part of our Contact"
    )
    sip_t1_ms: int = setting(
        500,
        Positive(int, "milliseconds"),
        "RFC 3261 timer T1, the round-trip estimate (all other timers derive from T1, T2, T4)",
    )
    sip_t2_ms: int = setting(
        4000, Positive(int, "milliseconds"), "RFC 3261 timer T2, the longest retransmit interval"
    )
    sip_t4_ms: int = setting(
        5000, Positive(int, "milliseconds"), "RFC 3261 timer T4, how long a message stays in the network"
    )
    # RFC 4028 session timers: the interval we ask for when the caller supports them, and our floor.
    session_expires: int = setting(
        1800,
        Positive(int, "seconds"),
        "RFC 4028 session interval we ask for when the caller supports timers but named none",
    )
    session_min_se: int = setting(
        90,
        Positive(int, "seconds"),
        "smallest session interval we accept",
        more="Below it an INVITE gets `422` with `Min-SE`.",
    )
