"""The kinds of value a setting takes: each parses a raw value (TOML, environment, flag), checks it,
and says its form for the reference page and ``--help``.

``parse(raw, name)`` raises ``ConfigError`` whose message starts with ``name``: the caller passes
the setting's name together with where the value came from (``environment sip_listen``).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

_N = TypeVar("_N", int, float)


class ConfigError(ValueError):
    """A setting has a value that cannot be used; the message names the setting."""


@dataclass(frozen=True)
class HostPort:
    host: str
    port: int
    # False when the port was left out (a trunk's domain is then located by NAPTR and SRV records).
    port_given: bool = field(default=True, compare=False, repr=False)

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class PortRange:
    low: int
    high: int

    def __str__(self) -> str:
        return f"{self.low}-{self.high}"


class Value:
    """A kind of value. ``form`` is how the reference page describes it, ``metavar`` how ``--help``
    names it, ``choices`` what a flag may be (None: anything ``parse`` takes)."""

    form = "text"
    metavar = "TEXT"
    choices: tuple[Any, ...] | None = None

    def parse(self, raw: Any, name: str) -> Any:
        return str(raw)


TEXT = Value()


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
    return HostPort(host, parse_port(port, name, allow_zero=True))


def parse_port(text: str, name: str, allow_zero: bool = False) -> int:
    try:
        port = int(text)
    except ValueError:
        raise ConfigError(f"{name}: {text!r} is not a port number") from None
    if not (0 if allow_zero else 1) <= port <= 65535:
        raise ConfigError(f"{name}: port {port} is out of range")
    return port


class Listen(Value):
    form = "`HOST:PORT`, the host an IP address (or `localhost`); port 0: any free port"
    metavar = "HOST:PORT"

    def parse(self, raw: Any, name: str) -> HostPort:
        return parse_host_port(str(raw), name)


class Address(Value):
    """host[:port] where host may be a DNS name (a trunk's address)."""

    form = "`host[:port]`, the host a DNS name or an IP address; port 5060 if left out"
    metavar = "HOST[:PORT]"

    def parse(self, raw: Any, name: str) -> HostPort:
        text = str(raw).strip()
        host, sep, port = text.rpartition(":")
        given = bool(sep) and "]" not in port
        if not given:
            host, port = text, "5060"
        host = host.strip("[]")
        if not host or any(c.isspace() or c in "/@;<>" for c in host):
            raise ConfigError(f"{name}: {text!r} is not a host[:port]")
        return HostPort(host, parse_port(port, name), given)


class NameServer(Value):
    """A DNS server: an IP address, with a port when not 53."""

    form = "`IP` or `IP:PORT` (port 53 if left out; `[IPv6]:PORT`)"
    metavar = "IP[:PORT]"

    def parse(self, raw: Any, name: str) -> HostPort:
        text = str(raw).strip()
        try:
            return HostPort(str(ipaddress.ip_address(text.strip("[]"))), 53, False)
        except ValueError:
            return parse_host_port(text, name)


def names_port(text: str) -> bool:
    """Whether an ``Address`` text gives a port (else the default applies)."""
    host, sep, port = text.strip().rpartition(":")
    return bool(sep) and port.isdigit() and (not host.startswith("[") or host.endswith("]"))


class Ports(Value):
    form = "`LOW-HIGH`, port numbers"
    metavar = "LOW-HIGH"

    def parse(self, raw: Any, name: str) -> PortRange:
        low, sep, high = str(raw).strip().partition("-")
        if not sep:
            raise ConfigError(f"{name}: expected LOW-HIGH, got {raw!r}")
        lo, hi = parse_port(low, name), parse_port(high, name)
        if lo > hi:
            raise ConfigError(f"{name}: low port {lo} is above high port {hi}")
        return PortRange(lo, hi)


class Port(Value):
    form = "a port number"
    metavar = "PORT"

    def parse(self, raw: Any, name: str) -> int:
        return parse_port(str(raw), name, allow_zero=True)


@dataclass(frozen=True)
class Positive(Value):
    kind: type = int
    unit: str = ""
    metavar = "N"

    @property
    def form(self) -> str:
        return _with_unit("a whole number above 0" if self.kind is int else "a number above 0", self.unit)

    def parse(self, raw: Any, name: str) -> Any:
        value = _number(self.kind, raw, name)
        if value <= 0:
            raise ConfigError(f"{name}: must be positive, got {value}")
        return value


@dataclass(frozen=True)
class NonNegative(Value):
    unit: str = ""
    metavar = "N"

    @property
    def form(self) -> str:
        return _with_unit("a number, 0 or more", self.unit)

    def parse(self, raw: Any, name: str) -> float:
        value = _number(float, raw, name)
        if value < 0:
            raise ConfigError(f"{name}: must be 0 or more, got {value}")
        return value


@dataclass(frozen=True)
class Between(Value):
    """A number from ``low`` to ``high``."""

    low: float
    high: float
    unit: str = ""
    metavar = "N"
    noun = "a number"
    spec = "g"  # how the bounds and the value are written

    @property
    def form(self) -> str:
        return _with_unit(f"{self.noun} from {self.low:{self.spec}} to {self.high:{self.spec}}", self.unit)

    def parse(self, raw: Any, name: str) -> Any:
        return _within(self._read(raw, name), self.low, self.high, name, self.spec)

    def _read(self, raw: Any, name: str) -> Any:
        return NonNegative().parse(raw, name)


@dataclass(frozen=True)
class Whole(Between):
    """A whole number from ``low`` to ``high``."""

    low: int
    high: int
    noun = "a whole number"
    spec = ""

    def _read(self, raw: Any, name: str) -> int:
        return _number(int, raw, name, self.noun)


class Workers(Value):
    """``auto`` (0: one per CPU the process may use) or a count."""

    form = "`auto` or a whole number from 1 to 256"
    metavar = "auto|N"

    def parse(self, raw: Any, name: str) -> int:
        if str(raw).strip().lower() == "auto":
            return 0
        return Whole(1, 256).parse(raw, name)


@dataclass(frozen=True)
class Choice(Value):
    """One of ``options``; text is compared in lower case (``upper``: in upper case)."""

    options: tuple[str, ...]
    upper: bool = False

    @property
    def form(self) -> str:
        return "one of " + ", ".join(f"`{o}`" for o in self.options)

    @property
    def metavar(self) -> str:
        return "{" + ",".join(self.options) + "}"

    @property
    def choices(self) -> tuple[str, ...]:
        return self.options

    def parse(self, raw: Any, name: str) -> str:
        text = str(raw).strip().upper() if self.upper else str(raw).lower()
        return choose(text, name, self.options)


@dataclass(frozen=True)
class Number(Value):
    """One of the whole numbers ``options``."""

    options: tuple[int, ...]
    unit: str = ""
    metavar = "N"

    @property
    def form(self) -> str:
        return _with_unit("one of " + ", ".join(map(str, self.options)), self.unit)

    def parse(self, raw: Any, name: str) -> int:
        return choose(Positive(int).parse(raw, name), name, self.options)


def choose(value: Any, name: str, options: tuple[Any, ...]) -> Any:
    if value not in options:
        raise ConfigError(f"{name}: expected one of {', '.join(map(str, options))}, got {value!r}")
    return value


class Flag(Value):
    form = "`true` or `false` (also 1/0, yes/no, on/off)"
    metavar = "BOOL"

    def parse(self, raw: Any, name: str) -> bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name}: expected true or false, got {raw!r}")


class IpAddress(Value):
    form = "an IP address"
    metavar = "IP"

    def parse(self, raw: Any, name: str) -> str:
        try:
            return str(ipaddress.ip_address(str(raw).strip()))
        except ValueError:
            raise ConfigError(f"{name}: {raw!r} is not an IP address") from None


class Url(Value):
    form = "an `http://` or `https://` URL"
    metavar = "URL"

    def parse(self, raw: Any, name: str) -> str:
        text = str(raw).strip()
        if not text.startswith(("http://", "https://")):
            raise ConfigError(f"{name}: expected an http:// or https:// URL, got {text!r}")
        return text


class ExistingFile(Value):
    form = "the path of a file"
    metavar = "FILE"

    def parse(self, raw: Any, name: str) -> str:
        path = Path(str(raw)).expanduser()
        if not path.is_file():
            raise ConfigError(f"{name}: no such file {str(path)!r}")
        return str(path)


class NewFile(Value):
    """A file we append to: it may not exist yet, but its folder must, and it must not be a folder."""

    form = "the path of a file (it may not exist yet; its folder must)"
    metavar = "FILE"

    def parse(self, raw: Any, name: str) -> str:
        path = Path(str(raw)).expanduser()
        if path.is_dir():
            raise ConfigError(f"{name}: {str(path)!r} is a directory, not a file")
        if not path.parent.is_dir():
            raise ConfigError(f"{name}: no such directory {str(path.parent)!r}")
        return str(path)


class Folder(Value):
    """A folder the bridge writes into: made at start-up if missing; not an existing file."""

    form = "the path of a folder (made if missing)"
    metavar = "DIR"

    def parse(self, raw: Any, name: str) -> str:
        path = Path(str(raw)).expanduser()
        if path.exists() and not path.is_dir():
            raise ConfigError(f"{name}: {str(path)!r} is a file, not a folder")
        return str(path)


class Realm(Value):
    form = "text without quotes, backslashes or line breaks"

    def parse(self, raw: Any, name: str) -> str:
        text = str(raw).strip()
        if not text or any(c in text for c in '"\\\r\n'):
            raise ConfigError(f"{name}: a realm is non-empty text without quotes, backslashes or line breaks")
        return text


class UserName(Value):
    form = "text without spaces, quotes or backslashes"

    def parse(self, raw: Any, name: str) -> str:
        text = str(raw)
        if not text or any(c.isspace() or c in '"\\' for c in text):
            raise ConfigError(f"{name}: a user name is non-empty, without spaces, quotes or backslashes")
        return text


class Pattern(Value):
    form = "a regular expression"

    def parse(self, raw: Any, name: str) -> str:
        try:
            re.compile(raw)
        except re.error as exc:
            raise ConfigError(f"{name}: {raw!r} is not a regular expression: {exc}") from None
        return str(raw)


class Network(Value):
    form = "an IP address or CIDR block"

    def parse(self, raw: Any, name: str) -> str:
        try:
            return str(ipaddress.ip_network(str(raw).strip(), strict=False))
        except ValueError:
            raise ConfigError(f"{name}: {raw!r} is not an address or CIDR block") from None


def parse_list(raw: Any, name: str) -> tuple[str, ...]:
    if isinstance(raw, str):
        return tuple(v.strip() for v in raw.split(",") if v.strip())
    if isinstance(raw, list | tuple) and all(isinstance(v, str) for v in raw):
        return tuple(raw)
    raise ConfigError(f"{name}: expected a list of strings")


@dataclass(frozen=True)
class ListOf(Value):
    """A TOML list of strings, comma-separated in the environment; each item parsed by ``item``."""

    item: Value = TEXT
    at_least_one: bool = False
    metavar = "A,B,..."

    @property
    def form(self) -> str:
        return f"a list, each {self.item.form} (comma-separated in the environment)"

    def parse(self, raw: Any, name: str) -> tuple[Any, ...]:
        items = tuple(self.item.parse(v, name) for v in parse_list(raw, name))
        if self.at_least_one and not items:
            raise ConfigError(f"{name}: name at least one of {', '.join(self.item.choices or ())}")
        return items


def _number(kind: Callable[[Any], _N], raw: Any, name: str, what: str = "a number") -> _N:
    try:
        return kind(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: {raw!r} is not {what}") from None


def _within(value: _N, low: _N, high: _N, name: str, spec: str = "") -> _N:
    """``value`` when it is from ``low`` to ``high``; the numbers written as ``spec`` says."""
    if not low <= value <= high:
        raise ConfigError(f"{name}: must be from {low:{spec}} to {high:{spec}}, got {value:{spec}}")
    return value


def _with_unit(text: str, unit: str) -> str:
    return f"{unit}: {text}" if unit else text
