"""The declarations of the limits and admission settings: how much the bridge takes, from whom."""

from __future__ import annotations

from dataclasses import dataclass

from .declare import setting
from .values import Between, Choice, ListOf, NonNegative, Positive, Realm, Whole

DIGEST_ALGORITHMS = ("SHA-512-256", "SHA-256", "MD5")


@dataclass(frozen=True)
class LimitSettings:
    """Limits and admission

    How many calls, messages and connections the bridge takes, and what it does with strangers.
    """

    max_calls: int = setting(
        500,
        Positive(int),
        "concurrent calls, inbound and outbound",
        more="An outbound call counts from the moment `POST /calls` admits it, before its trunk's"
        " address is resolved; beyond it INVITEs and `POST /calls` get `503` with `Retry-After: 5`."
        " One bridge process is one event loop: size it from the measured figures.",
    )
    max_calls_per_source: int = setting(
        10,
        Whole(0, 1_000_000),
        "inbound calls up at once from one address that no provider admitted (0: no cap)",
        more="Beyond it `503` with `Retry-After`.",
    )
    max_call_duration: float = setting(
        14400.0,
        NonNegative("seconds"),
        "longest call in seconds (0: no limit)",
        more="`POST /calls` may ask for less with `max_duration` (more gets `422`).",
    )
    # Per source address: SIP messages a second and the burst allowed (0: no limit); over it the
    # first request in a while gets 503 with Retry-After, the rest no answer.
    sip_rate_limit: float = setting(
        20.0,
        NonNegative("messages a second"),
        "SIP messages a second per source address (0: no limit)",
        more="Requests, ACKs, responses and garbage alike: each costs a parse. Over it the first request"
        " in 5 s gets `503` with `Retry-After: 5`, the rest no answer. Sources in a provider's"
        " `inbound_cidrs` (or its registrar) are never limited.",
    )
    sip_rate_burst: int = setting(60, Whole(1, 100000), "the burst sip_rate_limit allows")
    sip_rate_sources: int = setting(
        10000,
        Whole(16, 10_000_000),
        "source addresses the rate limit keeps track of",
        more="The least recently seen is forgotten first.",
    )
    sip_max_connections: int = setting(
        1000,
        Whole(1, 1_000_000),
        "TCP and TLS connections accepted and open at once (both together)",
        more="Checked when the socket is accepted, before any TLS handshake: over it, closed at once."
        " Connections the bridge opens are not counted. The soft open-file limit is raised (up to the"
        " hard one) to leave room for them.",
    )
    sip_max_connections_per_source: int = setting(
        32, Whole(1, 1_000_000), "TCP and TLS connections open at once from one address"
    )
    sip_trunk_connections: int = setting(
        100,
        Whole(0, 1_000_000),
        "of sip_max_connections, the places kept for providers' addresses",
        more="Other addresses never take them; providers' addresses (`inbound_cidrs`, registrar) have no"
        " per-address cap. Must be below `sip_max_connections`.",
    )
    sip_tls_handshake_timeout: float = setting(
        5.0,
        Between(0.1, 60.0, "seconds"),
        "seconds after accept for the TLS handshake (also for the closing handshake)",
        more="Else the connection is closed.",
    )
    sip_first_message_timeout: float = setting(
        10.0,
        Between(0.1, 300.0, "seconds"),
        "seconds after accept for the first complete SIP message (keep-alives do not count)",
        more="Also how long any message, once begun, may take to arrive whole; else the connection is"
        " closed.",
    )
    scanner_action: str = setting(
        "drop",
        Choice(("drop", "reject", "allow")),
        "what requests whose User-Agent or From names a known scanner get",
        more="`drop` (no answer), `reject` (`403`) or `allow`. Known scanners: `friendly-scanner`,"
        " `sipvicious`, `sipcli`, `sip-scan`, `iWar`, `SIVuS`, `sundayddr`, `VaxSIPUserAgent`, `smap`.",
    )
    scanner_signatures: tuple[str, ...] = setting(
        (),
        ListOf(),
        "replaces the list of known scanners (case-insensitive substrings)",
        shown_default="the built-in list",
    )
    # Once providers restrict inbound calls (inbound_cidrs or inbound_username): what an INVITE
    # from elsewhere gets.
    unknown_source_action: str = setting(
        "reject",
        Choice(("reject", "drop")),
        "once a provider restricts inbound calls: what an INVITE from elsewhere gets",
        more="`reject` (`403`) or `drop` (no answer, and none to its OPTIONS either).",
    )
    auth_realm: str = setting(
        "sipbridge",
        Realm(),
        "realm of the challenges to INVITEs from PBXs that authenticate (inbound_username)",
    )
    # MD5 alone by default: many deployed UAs answer only the first challenge, and only MD5.
    auth_algorithms: tuple[str, ...] = setting(
        ("MD5",),
        ListOf(Choice(DIGEST_ALGORITHMS, upper=True), at_least_one=True),
        "digest algorithms of those challenges, offered in the order given",
        more="MD5 alone by default because many deployed UAs answer only the first challenge, and only MD5.",
    )
