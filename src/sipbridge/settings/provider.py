"""The declarations of a provider's settings (a ``[providers.NAME]`` table), and how one is read."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from .declare import ENV_PREFIX, REQUIRED, declared, setting
from .media import CODECS_HELP, PHONE_CODECS, SRTP_MODES
from .sip import FORWARD_HEADERS_HELP, HeaderName
from .values import (
    TEXT,
    Address,
    Choice,
    ConfigError,
    Flag,
    HostPort,
    ListOf,
    Network,
    Pattern,
    Positive,
    UserName,
    Value,
    Whole,
    names_port,
)

PROVIDER_TYPES = ("asterisk", "twilio", "ringcentral", "generic")
TRANSPORTS = ("udp", "tcp", "tls")
# Home countries a provider may name (the keys of providers.policy.DIALLING_PLANS; a test keeps them equal).
COUNTRIES = (
    *("US", "CA", "GB", "DE", "FR", "IE", "NL", "BE", "CH", "AT", "SE", "NZ", "IN", "ZA", "AU", "JP"),
    *("ES", "IT", "PT", "DK", "NO", "MX"),
)


def _from_table(default: Any, value: Value, help: str, **more: Any) -> Any:
    """A provider setting read from its ``[providers.NAME]`` table only: of a provider's settings,
    only its secrets may also come from the environment."""
    return setting(default, value, help, env=False, **more)


@dataclass(frozen=True)
class ProviderConfig:
    """Providers

    A provider is a trunk or PBX the bridge exchanges calls with: a `[providers.NAME]` table in the
    TOML file (NAME: letters, digits, `-` and `_`). Its passwords may come from the environment
    instead, as `SIPBRIDGE_PROVIDER_<NAME>_PASSWORD` and `..._INBOUND_PASSWORD` (NAME in upper case,
    `-` as `_`). The types, and the Twilio and RingCentral set-up steps: [providers.md](providers.md).
    """

    name: str
    type: str = _from_table(REQUIRED, Choice(PROVIDER_TYPES), "the kind of peer")
    address: HostPort = _from_table(
        REQUIRED,
        Address(),
        "where the trunk or PBX is",
        more="Outbound INVITEs (and REGISTERs) go here unless `outbound_proxy` is set. A domain"
        " without a port is located by its NAPTR and SRV records (RFC 3263), with fail-over to the next"
        ' server; else port 5060 (with `transport = "tls"`, 5061).',
    )
    transport: str = _from_table(
        "udp",
        Choice(TRANSPORTS),
        "transport towards the provider",
        more="With `tls` the bridge verifies the provider's certificate and host name (`tls_ca_file`,"
        " `tls_verify`). Left out, a domain's NAPTR records may choose TCP or TLS.",
    )
    username: str | None = _from_table(
        None,
        TEXT,
        "digest user name the bridge answers 401/407 challenges with",
        more="Also the user part of the registration (the AOR) when `register = true`.",
    )
    password: str | None = setting(
        None, TEXT, "digest password; never returned by the API, never logged", secret=True
    )
    auth_username: str | None = _from_table(
        None,
        TEXT,
        "authorization ID, when the provider wants a digest user that differs from the AOR user",
        shown_default="username",
    )
    domain: str | None = _from_table(
        None,
        TEXT,
        "SIP domain written in the From, To and Request-URI of outbound requests",
        shown_default="the host of address",
    )
    outbound_proxy: HostPort | None = _from_table(
        None,
        Address(),
        "where every outbound request is sent first, while the Request-URI keeps domain",
    )
    register: bool = _from_table(
        False,
        Flag(),
        "register to the provider (REGISTER with username@domain)",
        more="Refreshed before `register_expires` runs out, so that it sends calls for that user to the"
        " bridge.",
    )
    register_expires: int = _from_table(
        300,
        Whole(10, 86400, "seconds"),
        "seconds asked for in the REGISTER",
        more="Refreshed at max(half, expiry − 60 s), retried after 5 s doubling to 300 s on failure,"
        " removed (`Expires: 0`) when the bridge stops.",
    )
    caller_id: str = _from_table(
        "sipbridge",
        TEXT,
        "default From user of outbound calls (a phone number in E.164 for trunks)",
    )
    destinations: tuple[str, ...] = _from_table(
        (),
        ListOf(Pattern()),
        "what POST /calls may dial through this provider",
        more="`POST /calls` is refused unless its `to`, in E.164 (`+14155550123`; a 2–6 digit extension"
        " stays as dialled), matches one in full. Nothing else is ever dialled through this provider.",
        shown_default="a narrow default per type",
    )
    allow_premium: bool = _from_table(
        False,
        Flag(),
        "allow premium-rate and international numbers that a destinations pattern matches",
        more="Premium-rate ranges (e.g. +1 900, +44 9x, satellite +88x) and international numbers are"
        " refused even when a `destinations` pattern matches, unless this is `true`. Within +1, the"
        " Caribbean and other non-US NANP countries count as international for a US or Canadian home.",
    )
    # Home country (ISO 3166 alpha-2) whose dialling the numbers given to POST /calls follow: they are
    # read as E.164 from it (00/011, trunk prefixes) before the allow-list and the premium and
    # international rules. None: the type's default (US for every type, policy.DEFAULT_COUNTRY).
    country: str | None = _from_table(
        None,
        Choice(COUNTRIES, upper=True),
        "the provider's home country: how a `to` is read",
        more="`00`, `011` (NANP) and national trunk prefixes (`0`, `1`) are turned into E.164 before any"
        " rule looks at the number, so `00441234567890`, `011441234567890` and `+441234567890` are the"
        " same number.",
        shown_default="by type: US",
    )
    max_outbound_calls: int = _from_table(
        5, Positive(int), "concurrent outbound calls through this provider; more are refused"
    )
    max_attempts_per_minute: int = _from_table(
        20, Positive(int), "outbound call attempts per minute through this provider"
    )
    ring_timeout: float = _from_table(
        30.0,
        Positive(float, "seconds"),
        "seconds an outbound call may ring before the bridge cancels it (no answer)",
    )
    failover_timeout: float = _from_table(
        4.0,
        Positive(float, "seconds"),
        "seconds an outbound INVITE waits for any response from one of the provider's servers before"
        " trying the next (RFC 3263 failover)",
        more="Only where the address resolves to more than one server. A server sends `100 Trying`"
        " within a fraction of a second (RFC 3261 §17.2.1); over UDP the transaction itself would give"
        " up only after 32 s (Timer B), longer than the ring timeout.",
    )
    refer: bool = _from_table(
        True,
        Flag(),
        "transfer this provider's calls by REFER when the phone side allows it (`Allow: REFER`)",
        more="A transfer in `auto` mode is a REFER (RFC 3515) when this is on and the phone side lists"
        " REFER in its Allow header; otherwise the bridge itself would place the call and join the"
        " two legs (`bridge` mode, not built yet: such a transfer fails with that reason).",
    )
    srtp: str | None = _from_table(
        None,
        Choice(SRTP_MODES),
        "SRTP on this provider's calls, inbound and outbound: `off`, `optional` or `required`",
        more='As the global `srtp` says; with `required`, use `transport = "tls"` (the keys travel in'
        " the SDP).",
        shown_default="the global srtp",
    )
    codecs: tuple[str, ...] | None = _from_table(
        None,
        ListOf(Choice(PHONE_CODECS, upper=True)),
        "the phone leg's codecs on this provider's calls, in our order of preference",
        more=CODECS_HELP,
        shown_default="the global codecs",
    )
    forward_headers: tuple[str, ...] | None = _from_table(
        None,
        ListOf(HeaderName()),
        "SIP headers of this provider's inbound INVITEs the agent is told",
        more=FORWARD_HEADERS_HELP,
        shown_default="the global forward_headers",
    )
    record: bool | None = _from_table(
        None,
        Flag(),
        "record this provider's calls, inbound and outbound (see the global `record`)",
        shown_default="the global record",
    )
    inbound_cidrs: tuple[str, ...] = _from_table(
        (),
        ListOf(Network()),
        "source networks inbound INVITEs for this provider are accepted from",
        more="Once any provider has such ranges, an INVITE from anywhere else gets `403` with a Warning"
        " before it reaches the agent; with none anywhere, every source is accepted (at most"
        " `max_calls_per_source` calls at a time from one address). A provider that registers also"
        " accepts its registrar's (or outbound proxy's) address. Trunk addresses are exempt from the"
        " per-source rate limit.",
        shown_default="empty (twilio: Twilio's published signalling ranges)",
    )
    # Digest credentials a PBX or trunk presents to call in (we challenge INVITEs from elsewhere).
    inbound_username: str | None = _from_table(
        None,
        UserName(),
        "user name a PBX or trunk presents to call in from an address not in inbound_cidrs",
        more="INVITEs from other sources are then challenged (`401`, realm `auth_realm`, algorithms"
        " `auth_algorithms`) and admitted as this provider when they answer rightly; wrong credentials"
        " get `403`. Unique across providers; set with `inbound_password`.",
    )
    inbound_password: str | None = setting(
        None, TEXT, "the password that goes with inbound_username", secret=True
    )

    # Whether the table names a transport: a domain's NAPTR records may choose one only when not.
    transport_set: bool = False

    @property
    def sip_domain(self) -> str:
        return self.domain or self.address.host


PROVIDER_SETTINGS = {item.name: item for item in declared(ProviderConfig)}


def provider_env(name: str, field_name: str) -> str:
    """The environment variable of a provider's setting (only its secrets have one)."""
    return f"{ENV_PREFIX}PROVIDER_{name.upper().replace('-', '_')}_{field_name.upper()}"


def parse_provider(name: str, table: Any, source: str, env: Mapping[str, str]) -> ProviderConfig:
    """One ``[providers.NAME]`` table, its secrets from ``env`` over the file's."""
    where = f"{source} providers.{name}"
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: must be a table")
    if not name.replace("-", "").replace("_", "").isalnum():
        raise ConfigError(f"{where}: provider names are letters, digits, - and _")
    values: dict[str, Any] = {"name": name}
    for key, raw in table.items():
        if key not in PROVIDER_SETTINGS:
            raise ConfigError(f"{where}: unknown setting {key!r}")
        values[key] = PROVIDER_SETTINGS[key].spec.value.parse(raw, f"{where}.{key}")
    for required in ("type", "address"):
        if required not in values:
            raise ConfigError(f"{where}: {required!r} is required")
    values["transport_set"] = "transport" in values
    if values.get("transport") == "tls" and not names_port(str(table["address"])):
        values["address"] = replace(values["address"], port=5061)  # SIP over TLS's own port
    if values.get("register") and not values.get("username"):
        raise ConfigError(f"{where}: register = true needs a username")
    for item in PROVIDER_SETTINGS.values():
        if item.spec.env and provider_env(name, item.name) in env:
            values[item.name] = env[provider_env(name, item.name)]
    if (values.get("inbound_username") is None) != (values.get("inbound_password") is None):
        raise ConfigError(
            f"{where}: inbound_username and inbound_password go together"
            f" (the password may come from {provider_env(name, 'inbound_password')})"
        )
    return ProviderConfig(**values)
