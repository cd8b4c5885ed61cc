"""All settings in one typed place: defaults < TOML file < SIPBRIDGE_* environment < CLI flags."""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .media.opus import OpusSettings

ENV_PREFIX = "SIPBRIDGE_"


class ConfigError(ValueError):
    """A setting has a value that cannot be used; the message names the setting."""


@dataclass(frozen=True)
class HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class PortRange:
    low: int
    high: int

    def __str__(self) -> str:
        return f"{self.low}-{self.high}"


PROVIDER_TYPES = ("asterisk", "twilio", "ringcentral", "generic")
TRANSPORTS = ("udp", "tcp", "tls")


@dataclass(frozen=True)
class ProviderConfig:
    """One trunk profile, ``[providers.NAME]`` in the TOML file."""

    name: str
    type: str
    address: HostPort
    transport: str = "udp"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    auth_username: str | None = None
    domain: str | None = None
    outbound_proxy: HostPort | None = None
    register: bool = False
    register_expires: int = 300
    caller_id: str = "sipbridge"
    destinations: tuple[str, ...] = ()
    allow_premium: bool = False
    # Home country (ISO 3166 alpha-2) whose dialling the numbers given to POST /calls follow: they are
    # read as E.164 from it (00/011, trunk prefixes) before the allow-list and the premium and
    # international rules. None: the type's default (US for every type, policy.DEFAULT_COUNTRY).
    country: str | None = None
    max_outbound_calls: int = 5
    max_attempts_per_minute: int = 20
    ring_timeout: float = 30.0
    inbound_cidrs: tuple[str, ...] = ()
    # Digest credentials a PBX or trunk presents to call in (we challenge INVITEs from elsewhere).
    inbound_username: str | None = None
    inbound_password: str | None = field(default=None, repr=False)

    @property
    def sip_domain(self) -> str:
        return self.domain or self.address.host


@dataclass(frozen=True)
class Config:
    sip_listen: HostPort = HostPort("0.0.0.0", 5060)
    # Loopback by default: an open call-placing API is how toll fraud starts.
    api_listen: HostPort = HostPort("127.0.0.1", 8090)
    # Bearer keys for the REST API; empty: no auth, and then the API must stay on loopback.
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    providers: tuple[ProviderConfig, ...] = ()
    rtp_ports: PortRange = PortRange(10000, 20000)
    # Whose RTP a call accepts (rtp/latch.py): the SDP's address and port or the signalling IP on
    # any port (NAT); "sdp": only the SDP's; "any": anyone (unsafe, for odd carriers).
    rtp_latch: str = "sdp-or-signalling"
    # Address written into Contact and SDP; None means the address the SIP socket is bound to
    # (or, when bound to a wildcard, the address the request arrived on).
    public_ip: str | None = None
    # Address written into SDP (where the caller sends RTP); None means public_ip (or as above).
    media_public_ip: str | None = None
    # SIP over TCP on the same port as UDP; TLS on its own port when a certificate and key are set.
    sip_tcp: bool = True
    sip_tls_port: int = 5061
    tls_cert_file: str | None = None
    tls_key_file: str | None = field(default=None, repr=False)
    # CA bundle for verifying the servers we connect to over TLS; None: the system's store.
    tls_ca_file: str | None = None
    tls_verify: bool = True
    # WHIP endpoint of the voice agent; None starts the embedded echo agent in-process.
    agent: str | None = None
    agent_token: str | None = field(default=None, repr=False)
    agent_timeout: float = 10.0
    # Seconds with nothing from the agent (not even RTCP) before its link counts as failed.
    agent_silence_timeout: float = 5.0
    # After the agent link fails mid-call: how long to keep redialling with the resume token
    # (the StreamCore server keeps a dropped session about 30 s); 0: hang up at once.
    agent_resume_window: float = 20.0
    ice_servers: tuple[str, ...] = ()
    # Local addresses offered as ICE host candidates; empty: loopback for a loopback agent, else all.
    ice_host_addresses: tuple[str, ...] = ()
    embedded_agent_listen: HostPort = HostPort("127.0.0.1", 0)
    opus_bitrate: int = 32000
    # lowdelay: 2.5 ms of encoder lookahead instead of 6.5 ms, same quality and cost at 32 kbit/s
    # (libopus codes the phone band in CELT either way at that rate), but no in-band FEC.
    opus_application: str = "lowdelay"
    # PCM rate at the libopus boundary: 8000 codes the phone's band natively (no resampling at all).
    opus_pcm_rate: int = 8000
    opus_complexity: int = 1
    opus_fec: bool = False
    sip_t1_ms: int = 500
    sip_t2_ms: int = 4000
    sip_t4_ms: int = 5000
    # RFC 4028 session timers: the interval we ask for when the caller supports them, and our floor.
    session_expires: int = 1800
    session_min_se: int = 90
    max_calls: int = 500
    # Inbound calls up at once from one address that no provider admitted (0: no cap).
    max_calls_per_source: int = 10
    # Width of the shared 20 ms clock's slots: each call's ticks are placed on this grid (2 ms: up to
    # 2 ms of wait per direction; wider slots mean fewer event-loop wakeups, i.e. less CPU).
    clock_slot_ms: int = 2
    # Seconds without RTP from the phone before a call is ended (0: never); paused while on hold.
    rtp_timeout: float = 30.0
    # Longest call in seconds (0: no limit); POST /calls may ask for less.
    max_call_duration: float = 14400.0
    user_agent: str = "sipbridge"
    log_level: str = "info"
    # Per source address: SIP requests a second and the burst allowed (0: no limit); over it the
    # first request in a while gets 503 with Retry-After, the rest no answer. Trunks named by a
    # provider's inbound_cidrs are never limited. At most sip_rate_sources sources are tracked.
    sip_rate_limit: float = 20.0
    sip_rate_burst: int = 60
    sip_rate_sources: int = 10000
    # TCP and TLS connections accepted and open at once (both together), checked at accept, before
    # any TLS handshake; of those, sip_trunk_connections are kept for providers' addresses
    # (inbound_cidrs, registrar), and each other address may hold sip_max_connections_per_source.
    sip_max_connections: int = 1000
    sip_max_connections_per_source: int = 32
    sip_trunk_connections: int = 100
    # Seconds after accept for the TLS handshake, and for the first complete SIP message (which is
    # also how long a message, once begun, may take to arrive whole).
    sip_tls_handshake_timeout: float = 5.0
    sip_first_message_timeout: float = 10.0
    # Requests whose User-Agent or From names a known scanner (friendly-scanner, sipvicious, ...):
    # drop (no answer), reject (403) or allow; scanner_signatures replaces the built-in list.
    scanner_action: str = "drop"
    scanner_signatures: tuple[str, ...] = ()
    # Once providers restrict inbound calls (inbound_cidrs or inbound_username): what an INVITE
    # from elsewhere gets, reject (403) or drop (no answer, and no answer to OPTIONS either).
    unknown_source_action: str = "reject"
    # Realm and digest algorithms (offered in this order) of the challenges to INVITEs that
    # authenticate with a provider's inbound_username. MD5 alone by default: many deployed UAs
    # answer only the first challenge, and only MD5.
    auth_realm: str = "sipbridge"
    auth_algorithms: tuple[str, ...] = ("MD5",)
    # text for a person at a terminal (and the default, as before); json for a log pipeline.
    log_format: str = "text"
    # Phone numbers and SIP users in logs and call records keep only their last digits.
    log_redact: bool = True
    # /health says "degraded" from this share of max_calls (or of the RTP ports) in use.
    degraded_load: float = 0.8
    # On SIGTERM: seconds running calls may go on before they are ended with BYE.
    drain_grace: float = 30.0
    # A file that gets one JSON line per ended call; None: no records.
    call_records: str | None = None

    @property
    def opus(self) -> OpusSettings:
        """The opus_* settings as the one value the media objects take."""
        return OpusSettings(
            self.opus_bitrate, self.opus_application, self.opus_complexity, self.opus_fec, self.opus_pcm_rate
        )

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every configured credential: never to be logged, whatever the format."""
        values = (
            *self.api_keys,
            self.agent_token,
            *(p.password for p in self.providers),
            *(p.inbound_password for p in self.providers),
        )
        return tuple(v for v in values if v)


def parse_host_port(text: str, name: str) -> HostPort:
    text = text.strip()
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise ConfigError(f"{name}: expected HOST:PORT, got {text!r}")
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            raise ConfigError(f"{name}: {host!r} is not an IP address") from None
    return HostPort(host, _parse_port(port, name, allow_zero=True))


def parse_port_range(text: str, name: str) -> PortRange:
    low, sep, high = text.strip().partition("-")
    if not sep:
        raise ConfigError(f"{name}: expected LOW-HIGH, got {text!r}")
    lo, hi = _parse_port(low, name), _parse_port(high, name)
    if lo > hi:
        raise ConfigError(f"{name}: low port {lo} is above high port {hi}")
    return PortRange(lo, hi)


def _parse_port(text: str, name: str, allow_zero: bool = False) -> int:
    try:
        port = int(text)
    except ValueError:
        raise ConfigError(f"{name}: {text!r} is not a port number") from None
    if not (0 if allow_zero else 1) <= port <= 65535:
        raise ConfigError(f"{name}: port {port} is out of range")
    return port


def _parse_ip(text: str, name: str) -> str:
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        raise ConfigError(f"{name}: {text!r} is not an IP address") from None


def _parse_url(text: str, name: str) -> str:
    text = text.strip()
    if not text.startswith(("http://", "https://")):
        raise ConfigError(f"{name}: expected an http:// or https:// URL, got {text!r}")
    return text


def _parse_positive(kind: type, text: Any, name: str) -> Any:
    try:
        value = kind(text)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: {text!r} is not a number") from None
    if value <= 0:
        raise ConfigError(f"{name}: must be positive, got {value}")
    return value


def _parse_non_negative(text: Any, name: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: {text!r} is not a number") from None
    if value < 0:
        raise ConfigError(f"{name}: must be 0 or more, got {value}")
    return value


def _parse_range(text: Any, name: str, low: int, high: int) -> int:
    try:
        value = int(text)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: {text!r} is not a whole number") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}: must be from {low} to {high}, got {value}")
    return value


def _parse_range_float(text: Any, name: str, low: float, high: float) -> float:
    value = _parse_non_negative(text, name)
    if not low <= value <= high:
        raise ConfigError(f"{name}: must be from {low:g} to {high:g}, got {value:g}")
    return value


def _parse_bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}: expected true or false, got {value!r}")


def _parse_list(value: Any, name: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ConfigError(f"{name}: expected a list of strings")


_CONVERTERS: dict[str, Any] = {
    "sip_listen": parse_host_port,
    "api_listen": parse_host_port,
    "api_keys": lambda v, n: _parse_keys(v, n),
    "embedded_agent_listen": parse_host_port,
    "rtp_ports": parse_port_range,
    "rtp_latch": lambda v, n: _choice(str(v).lower(), n, ("sdp-or-signalling", "sdp", "any")),
    "public_ip": _parse_ip,
    "media_public_ip": _parse_ip,
    "sip_tcp": lambda v, n: _parse_bool(v, n),
    "sip_tls_port": lambda v, n: _parse_port(str(v), n, allow_zero=True),
    "tls_cert_file": lambda v, n: _parse_file(v, n),
    "tls_key_file": lambda v, n: _parse_file(v, n),
    "tls_ca_file": lambda v, n: _parse_file(v, n),
    "tls_verify": lambda v, n: _parse_bool(v, n),
    "agent": _parse_url,
    "agent_token": lambda v, n: str(v),
    "agent_timeout": lambda v, n: _parse_positive(float, v, n),
    "agent_silence_timeout": lambda v, n: _parse_range_float(v, n, 1.0, 60.0),
    "agent_resume_window": lambda v, n: _parse_range_float(v, n, 0.0, 300.0),
    "ice_servers": _parse_list,
    "ice_host_addresses": lambda v, n: tuple(_parse_ip(a, n) for a in _parse_list(v, n)),
    "opus_bitrate": lambda v, n: _parse_positive(int, v, n),
    "opus_application": lambda v, n: _choice(v, n, ("voip", "audio", "lowdelay")),
    "opus_pcm_rate": lambda v, n: _choice(int(_parse_positive(int, v, n)), n, (8000, 16000, 48000)),
    "opus_complexity": lambda v, n: _parse_range(v, n, 0, 10),
    "opus_fec": lambda v, n: _parse_bool(v, n),
    "sip_t1_ms": lambda v, n: _parse_positive(int, v, n),
    "sip_t2_ms": lambda v, n: _parse_positive(int, v, n),
    "sip_t4_ms": lambda v, n: _parse_positive(int, v, n),
    "session_expires": lambda v, n: _parse_positive(int, v, n),
    "session_min_se": lambda v, n: _parse_positive(int, v, n),
    "max_calls": lambda v, n: _parse_positive(int, v, n),
    "max_calls_per_source": lambda v, n: _parse_range(v, n, 0, 1_000_000),
    "clock_slot_ms": lambda v, n: _choice(int(_parse_positive(int, v, n)), n, (1, 2, 4, 5, 10, 20)),
    "rtp_timeout": lambda v, n: _parse_non_negative(v, n),
    "max_call_duration": lambda v, n: _parse_non_negative(v, n),
    "user_agent": lambda v, n: str(v),
    "log_level": lambda v, n: _choice(str(v).lower(), n, ("debug", "info", "warning", "error")),
    "sip_rate_limit": lambda v, n: _parse_non_negative(v, n),
    "sip_rate_burst": lambda v, n: _parse_range(v, n, 1, 100000),
    "sip_rate_sources": lambda v, n: _parse_range(v, n, 16, 10_000_000),
    "sip_max_connections": lambda v, n: _parse_range(v, n, 1, 1_000_000),
    "sip_max_connections_per_source": lambda v, n: _parse_range(v, n, 1, 1_000_000),
    "sip_trunk_connections": lambda v, n: _parse_range(v, n, 0, 1_000_000),
    "sip_tls_handshake_timeout": lambda v, n: _parse_range_float(v, n, 0.1, 60.0),
    "sip_first_message_timeout": lambda v, n: _parse_range_float(v, n, 0.1, 300.0),
    "scanner_action": lambda v, n: _choice(str(v).lower(), n, ("drop", "reject", "allow")),
    "scanner_signatures": _parse_list,
    "unknown_source_action": lambda v, n: _choice(str(v).lower(), n, ("reject", "drop")),
    "auth_realm": lambda v, n: _parse_realm(v, n),
    "auth_algorithms": lambda v, n: _parse_algorithms(v, n),
    "log_format": lambda v, n: _choice(str(v).lower(), n, ("text", "json")),
    "log_redact": lambda v, n: _parse_bool(v, n),
    "degraded_load": lambda v, n: _parse_range_float(v, n, 0.01, 1.0),
    "drain_grace": lambda v, n: _parse_range_float(v, n, 0.0, 86400.0),
    "call_records": lambda v, n: _parse_new_file(v, n),
}

DIGEST_ALGORITHMS = ("SHA-512-256", "SHA-256", "MD5")


def _parse_algorithms(value: Any, name: str) -> tuple[str, ...]:
    algorithms = tuple(a.upper() for a in _parse_list(value, name))
    if not algorithms:
        raise ConfigError(f"{name}: name at least one of {', '.join(DIGEST_ALGORITHMS)}")
    for algorithm in algorithms:
        _choice(algorithm, name, DIGEST_ALGORITHMS)
    return algorithms


def _parse_realm(value: Any, name: str) -> str:
    text = str(value).strip()
    if not text or any(c in text for c in '"\\\r\n'):
        raise ConfigError(f"{name}: a realm is non-empty text without quotes, backslashes or line breaks")
    return text


_OPTIONAL = frozenset(
    {"public_ip", "media_public_ip", "agent", "agent_token", "tls_cert_file", "tls_key_file", "tls_ca_file"}
    | {"call_records"}
)


def _parse_file(value: Any, name: str) -> str:
    path = Path(str(value)).expanduser()
    if not path.is_file():
        raise ConfigError(f"{name}: no such file {str(path)!r}")
    return str(path)


def _parse_new_file(value: Any, name: str) -> str:
    """A file we append to: it may not exist yet, but its folder must, and it must not be a folder."""
    path = Path(str(value)).expanduser()
    if path.is_dir():
        raise ConfigError(f"{name}: {str(path)!r} is a directory, not a file")
    if not path.parent.is_dir():
        raise ConfigError(f"{name}: no such directory {str(path.parent)!r}")
    return str(path)


def _choice(value: Any, name: str, choices: tuple[Any, ...]) -> Any:
    if value not in choices:
        raise ConfigError(f"{name}: expected one of {', '.join(map(str, choices))}, got {value!r}")
    return value


def _convert(values: Mapping[str, Any], source: str) -> dict[str, Any]:
    known = set(_CONVERTERS)
    out: dict[str, Any] = {}
    for key, raw in values.items():
        if key not in known:
            raise ConfigError(f"{source}: unknown setting {key!r}")
        if raw is None or raw == "":
            out[key] = None if key in _OPTIONAL else raw
            if out[key] is None:
                continue
        out[key] = _CONVERTERS[key](raw, f"{source} {key}")
    return out


def _from_toml(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: {exc}") from None
    source = f"config file {path}:"
    api = data.pop("api", {})
    providers = data.pop("providers", {})
    if not isinstance(api, dict) or not isinstance(providers, dict):
        raise ConfigError(f"{source} [api] and [providers.NAME] must be tables")
    for key, value in api.items():
        if key not in ("keys", "listen"):
            raise ConfigError(f"{source} unknown setting 'api.{key}'")
        data[f"api_{key}"] = value
    out = _convert(data, source)
    if providers:
        out["providers"] = tuple(_parse_provider(name, table, source) for name, table in providers.items())
    return out


_PROVIDER_CONVERTERS: dict[str, Any] = {
    "type": lambda v, n: _choice(str(v), n, PROVIDER_TYPES),
    "address": lambda v, n: _parse_address(v, n),
    "transport": lambda v, n: _choice(str(v).lower(), n, TRANSPORTS),
    "username": lambda v, n: str(v),
    "password": lambda v, n: str(v),
    "auth_username": lambda v, n: str(v),
    "domain": lambda v, n: str(v),
    "outbound_proxy": lambda v, n: _parse_address(v, n),
    "register": lambda v, n: _parse_bool(v, n),
    "register_expires": lambda v, n: _parse_range(v, n, 10, 86400),
    "caller_id": lambda v, n: str(v),
    "destinations": lambda v, n: tuple(_parse_pattern(p, n) for p in _parse_list(v, n)),
    "allow_premium": lambda v, n: _parse_bool(v, n),
    "country": lambda v, n: _choice(str(v).strip().upper(), n, COUNTRIES),
    "max_outbound_calls": lambda v, n: _parse_positive(int, v, n),
    "max_attempts_per_minute": lambda v, n: _parse_positive(int, v, n),
    "ring_timeout": lambda v, n: _parse_positive(float, v, n),
    "inbound_cidrs": lambda v, n: tuple(_parse_cidr(c, n) for c in _parse_list(v, n)),
    "inbound_username": lambda v, n: _parse_username(v, n),
    "inbound_password": lambda v, n: str(v),
}


def _parse_username(value: Any, name: str) -> str:
    text = str(value)
    if not text or any(c.isspace() or c in '"\\' for c in text):
        raise ConfigError(f"{name}: a user name is non-empty, without spaces, quotes or backslashes")
    return text


def _parse_provider(name: str, table: Any, source: str) -> ProviderConfig:
    where = f"{source} providers.{name}"
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: must be a table")
    if not name.replace("-", "").replace("_", "").isalnum():
        raise ConfigError(f"{where}: provider names are letters, digits, - and _")
    values: dict[str, Any] = {"name": name}
    for key, raw in table.items():
        if key not in _PROVIDER_CONVERTERS:
            raise ConfigError(f"{where}: unknown setting {key!r}")
        values[key] = _PROVIDER_CONVERTERS[key](raw, f"{where}.{key}")
    for required in ("type", "address"):
        if required not in values:
            raise ConfigError(f"{where}: {required!r} is required")
    if values.get("transport") == "tls" and not _names_port(str(table["address"])):
        values["address"] = replace(values["address"], port=5061)  # SIP over TLS's own port
    if values.get("register") and not values.get("username"):
        raise ConfigError(f"{where}: register = true needs a username")
    return ProviderConfig(**values)


def _parse_address(value: Any, name: str) -> HostPort:
    """host[:port] where host may be a DNS name (a trunk's address)."""
    text = str(value).strip()
    host, sep, port = text.rpartition(":")
    if not sep or "]" in port:
        host, port = text, "5060"
    host = host.strip("[]")
    if not host or any(c.isspace() or c in "/@;<>" for c in host):
        raise ConfigError(f"{name}: {text!r} is not a host[:port]")
    return HostPort(host, _parse_port(port, name))


def _names_port(text: str) -> bool:
    host, sep, port = text.strip().rpartition(":")
    return bool(sep) and port.isdigit() and (not host.startswith("[") or host.endswith("]"))


def _parse_pattern(text: str, name: str) -> str:
    try:
        re.compile(text)
    except re.error as exc:
        raise ConfigError(f"{name}: {text!r} is not a regular expression: {exc}") from None
    return text


def _parse_cidr(text: str, name: str) -> str:
    try:
        return str(ipaddress.ip_network(text.strip(), strict=False))
    except ValueError:
        raise ConfigError(f"{name}: {text!r} is not an address or CIDR block") from None


# Home countries a provider may name (the keys of providers.policy.DIALLING_PLANS; a test keeps them equal).
COUNTRIES = (
    *("US", "CA", "GB", "DE", "FR", "IE", "NL", "BE", "CH", "AT", "SE", "NZ", "IN", "ZA", "AU", "JP"),
    *("ES", "IT", "PT", "DK", "NO", "MX"),
)
MIN_KEY_LENGTH = 16
MIN_KEY_DISTINCT = 8


def _parse_keys(value: Any, name: str) -> tuple[str, ...]:
    """Bearer keys: a sanity check against placeholders and typos, not a strength meter (the message
    never shows the key: it is a secret)."""
    keys = _parse_list(value, name)
    if isinstance(value, str) and not keys:  # e.g. SIPBRIDGE_API_KEYS=" ": meant a key, got none
        raise ConfigError(f"{name}: only blanks where API keys were expected")
    for index, key in enumerate(keys, 1):
        problem = _key_problem(key)
        if problem:
            hint = "make one with `openssl rand -hex 24`"
            raise ConfigError(f"{name}: API key {index} of {len(keys)} {problem} ({hint})")
    return keys


def _key_problem(key: str) -> str | None:
    """What is wrong with an API key: 16+ visible ASCII characters (no blanks: a header cannot
    carry them reliably), at least 8 different ones, and not a shorter string repeated."""
    if not key or any(not "!" <= c <= "~" for c in key):
        return "holds blanks or characters other than visible ASCII"
    if len(key) < MIN_KEY_LENGTH:
        return f"must be at least {MIN_KEY_LENGTH} characters"
    if len(set(key)) < MIN_KEY_DISTINCT:
        return f"must hold at least {MIN_KEY_DISTINCT} different characters"
    if any(key[period:] == key[:-period] for period in range(1, len(key) // 2 + 1)):
        return "is a shorter string repeated"
    return None


def _provider_secrets(config: Config, env: Mapping[str, str]) -> Config:
    """SIPBRIDGE_PROVIDER_<NAME>_PASSWORD and ..._INBOUND_PASSWORD keep passwords out of the file."""
    providers = []
    for provider in config.providers:
        prefix = f"{ENV_PREFIX}PROVIDER_{provider.name.upper().replace('-', '_')}_"
        secrets = {
            field_name: env[prefix + field_name.upper()]
            for field_name in ("password", "inbound_password")
            if prefix + field_name.upper() in env
        }
        providers.append(replace(provider, **secrets))
    return replace(config, providers=tuple(providers))


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    known = set(_CONVERTERS)
    values = {
        key[len(ENV_PREFIX) :].lower(): value
        for key, value in env.items()
        if key.startswith(ENV_PREFIX) and key[len(ENV_PREFIX) :].lower() in known
    }
    return _convert(values, "environment")


def load_config(
    path: Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Build the effective configuration; raises ConfigError naming the bad setting."""
    merged: dict[str, Any] = {}
    if path is not None:
        merged.update(_from_toml(path))
    merged.update(_from_env(os.environ if env is None else env))
    merged.update(_convert({k: v for k, v in (overrides or {}).items() if v is not None}, "option"))
    config = _provider_secrets(replace(Config(), **merged), os.environ if env is None else env)
    _check(config)
    return config


def _check(config: Config) -> None:
    """Rules that span settings."""
    if config.sip_t2_ms < config.sip_t1_ms:
        raise ConfigError("sip_t2_ms must not be below sip_t1_ms")
    if (config.tls_cert_file is None) != (config.tls_key_file is None):
        raise ConfigError("tls_cert_file and tls_key_file must be set together")
    if config.opus_fec and config.opus_application == "lowdelay":
        raise ConfigError(
            "opus_fec needs opus_application voip or audio:"
            " lowdelay codes CELT only, which has no in-band FEC"
        )
    if config.session_expires < config.session_min_se:
        raise ConfigError("session_expires must not be below session_min_se")
    if config.sip_trunk_connections >= config.sip_max_connections:
        raise ConfigError("sip_trunk_connections must be below sip_max_connections (the rest is for others)")
    for provider in config.providers:
        if (provider.inbound_username is None) != (provider.inbound_password is None):
            name = provider.name.upper().replace("-", "_")
            raise ConfigError(
                f"providers.{provider.name}: inbound_username and inbound_password go together"
                f" (the password may come from SIPBRIDGE_PROVIDER_{name}_INBOUND_PASSWORD)"
            )
    usernames = [p.inbound_username for p in config.providers if p.inbound_username]
    if len(usernames) != len(set(usernames)):
        raise ConfigError("providers: each inbound_username must be unique (it says which trunk calls)")
    if not config.api_keys and not _is_loopback(config.api_listen.host):
        raise ConfigError(
            f"api_listen {config.api_listen} is reachable from other hosts but no API keys are set:"
            " set [api] keys (SIPBRIDGE_API_KEYS), or listen on 127.0.0.1"
        )


def security_warnings(config: Config, path: Path | None) -> list[str]:
    """Settings that work but leave a door open, for the operator to read at start-up."""
    warnings = []
    if path is not None and _readable_by_others(path) and _names_a_secret(path, config.secrets):
        warnings.append(
            f"config file {path} holds secrets and is readable by other users"
            f" (mode {path.stat().st_mode & 0o777:o}): chmod 600 it, or pass the secrets in the environment"
        )
    if not config.tls_verify:
        warnings.append(
            "tls_verify = false: the certificates of TLS peers we connect to are not checked,"
            " so anyone on the path can pose as a trunk"
        )
    return warnings


def _readable_by_others(path: Path) -> bool:
    try:
        return bool(path.stat().st_mode & 0o044)
    except OSError:
        return False


def _names_a_secret(path: Path, secrets: tuple[str, ...]) -> bool:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError):
        return False
    return any(secret in text for secret in secrets)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
