"""Run kamailio 5.6 as a carrier's inbound edge proxy in front of a SIP server, for a test.

``with kamailio.proxy(target=("127.0.0.1", port), transport="tcp", workdir=tmp_path) as kam:`` starts
a real stateful proxy (tm, rr, sl) on 127.0.0.1 that listens for UDP and TCP on ``kam.port`` (and TLS
on ``kam.tls_port`` when given certificates) and

- relays every initial request to the target over `transport` (udp, tcp or tls), record-routing
  INVITE and SUBSCRIBE (two Record-Route headers when the transport changes between the sides), with
  the Request-URI's host and port rewritten to the target's (``rewrite_ruri=False`` keeps it);
- routes every in-dialog request (one with a To tag) by its Route headers (loose_route), so the ACK
  and BYE of a call come back through it whichever side sends them.

Its configuration (rendered from ``testbed/kamailio/proxy.cfg``), pid file and log stay in the
workdir. Every request in and out and every reply is logged as one ``PROXY|event|...`` line, read
back with :meth:`KamailioProxy.events`: ``kam.events("loose", "BYE")`` are the BYEs it routed within a
dialog.

``with kamailio.registrar("alice", "secret", "provider.test", workdir=tmp_path) as reg:`` starts a
provider's registrar + authenticating proxy instead (``testbed/kamailio/registrar.cfg``): one
account, REGISTER challenged with 401 and saved in memory, the account's other requests challenged
with 407, every initial request routed to the contacts bound to its Request-URI user (or to a trunk
target, or 404). ``reg.locations()`` reads the location table over JSON-RPC (UDP, loopback);
``reg.events("saved")`` etc. read its log as for the proxy. It verifies SHA-256 digests too
(``algorithm="SHA-256"``), which sipp 3.6.1 cannot.

kamailio runs in the foreground (``-DD -E``) in its own process group with a small shared memory
(``-m 64 -M 8``), as whatever user runs the tests (no root-only paths: ``-Y`` puts its runtime folder
in the workdir; the proxy loads no control socket, the registrar only jsonrpcs on a UDP port of
127.0.0.1).
"""

from __future__ import annotations

import errno
import ipaddress
import json
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .procs import LOOPBACK, ManagedProcess, free_port_block, free_udp_port, udp_port_bound, wait_for

Transport = Literal["udp", "tcp", "tls"]

TEMPLATE = Path(__file__).parent / "kamailio" / "proxy.cfg"

_MODULE_DIRS = (
    "/usr/lib/x86_64-linux-gnu/kamailio/modules",
    "/usr/lib/aarch64-linux-gnu/kamailio/modules",
    "/usr/lib64/kamailio/modules",
    "/usr/lib/kamailio/modules",
    "/usr/local/lib64/kamailio/modules",
    "/usr/local/lib/kamailio/modules",
)

# PROXY|event|method|r-uri (or "status reason" for a reply)|proto:ip:port|extra|call-id
_EVENT = re.compile(r"PROXY\|([a-z-]+)\|([^|]*)\|([^|]*)\|([^|]*)\|([^|]*)\|([^|\r\n]*)")


def tcp_port_bound(port: int, host: str = LOOPBACK) -> bool:
    """True when something listens on TCP `port` (found by binding, not connecting: a test connection
    to a TLS listener would show up in its log as a failed handshake)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                return True
            raise
        return False


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def module_path() -> Path | None:
    """Where kamailio's modules are (the Debian package puts them under the multiarch folder)."""
    for folder in _MODULE_DIRS:
        if (Path(folder) / "tm.so").exists():
            return Path(folder)
    found = sorted(Path("/usr/lib").glob("*/kamailio/modules/tm.so"))
    return found[0].parent if found else None


def available(tls: bool = False) -> bool:
    """kamailio and its modules are installed (and the tls module, with `tls`: kamailio-tls-modules)."""
    mods = module_path()
    if shutil.which("kamailio") is None or mods is None:
        return False
    return not tls or (mods / "tls.so").exists()


@dataclass(frozen=True)
class ProxyEvent:
    """One ``PROXY|...`` log line.

    event: ``in`` (request received), ``relay`` (initial request relayed to `extra` = the target URI),
    ``loose`` (in-dialog request routed by its Route headers; `extra` = the next hop when set),
    ``sent`` (a request left, to `peer`; not logged for the CANCELs tm makes itself, nor for its
    hop-by-hop ACK of a failure), ``reply`` (a reply came back through a transaction; `ruri` = "200
    OK"), ``failure`` (an INVITE's transaction failed; `ruri` = the code, `peer` = the caller),
    ``relay-failed``, ``no-route`` (in-dialog request without a Route to us: answered 404),
    ``insane`` (dropped by sanity_check).
    peer: ``udp:127.0.0.1:5060`` (where it came from; for ``sent``, where it went).
    """

    event: str
    method: str
    ruri: str
    peer: str
    extra: str
    call_id: str

    @property
    def proto(self) -> str:
        return self.peer.split(":", 1)[0].lower()


class _KamailioLog:
    """What every running kamailio here offers: its log and the ``PROXY|...`` lines in it."""

    proc: ManagedProcess
    config_path: Path

    @property
    def log_path(self) -> Path:
        """kamailio's log (its stderr: -E)."""
        return self.proc.stderr_path

    def log(self) -> str:
        return self.proc.stderr()

    def events(self, event: str | None = None, method: str | None = None) -> list[ProxyEvent]:
        """The ``PROXY|...`` lines logged so far, optionally only one event kind and/or method."""
        found = [ProxyEvent(*m.groups()) for m in _EVENT.finditer(self.log())]
        return [
            e
            for e in found
            if (event is None or e.event == event) and (method is None or e.method == method.upper())
        ]

    def wait_for_event(self, event: str, method: str | None = None, timeout: float = 5) -> ProxyEvent:
        """The first matching :meth:`events` entry, waiting up to `timeout` s for it (TimeoutError)."""
        found = wait_for(
            lambda: self.events(event, method),
            timeout,
            what=lambda: f"kamailio logging PROXY|{event}|{method or '*'}\n{self.report()}",
        )
        return found[0]

    def report(self, lines: int = 60) -> str:
        """The tail of kamailio's log and how it was started: for assertion messages."""
        return f"{self.proc.tail(lines)}\n(config: {self.config_path})"


@dataclass
class KamailioProxy(_KamailioLog):
    """A running kamailio proxy (see :func:`proxy`)."""

    proc: ManagedProcess
    host: str
    port: int  # UDP and TCP
    tls_port: int | None
    target: tuple[str, int]
    transport: Transport
    workdir: Path
    config_path: Path

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``: where to send (UDP or TCP), e.g. sipp's target."""
        return f"{self.host}:{self.port}"

    def uri(self, user: str = "service", transport: Transport = "udp") -> str:
        """A Request-URI that reaches the proxy over `transport` (TLS: its TLS port)."""
        if transport == "tls":
            if self.tls_port is None:
                raise ValueError("this proxy has no TLS listener (give proxy(tls=...))")
            return f"sip:{user}@{self.host}:{self.tls_port};transport=tls"
        suffix = "" if transport == "udp" else f";transport={transport}"
        return f"sip:{user}@{self.host}:{self.port}{suffix}"


def write_tls_config(
    path: Path,
    *,
    cert: Path,
    key: Path,
    ca_file: Path | None,
    verify_server: bool,
    server_name: str | None = None,
) -> Path:
    """kamailio's tls.cfg: its server side presents `cert`/`key` (clients are not asked for one); its
    client side (connections it opens to the target) checks the server's chain against `ca_file` when
    `verify_server` (kamailio 5.6 checks the chain only, not the host name)."""
    client = ["[client:default]", "method = TLSv1.2+"]
    if verify_server:
        if ca_file is None:
            raise ValueError("verify_server needs a ca_file")
        client += ["verify_certificate = yes", "require_certificate = yes", f"ca_list = {ca_file}"]
    else:
        client += ["verify_certificate = no", "require_certificate = no"]
    if server_name:
        client.append(f"server_name = {server_name}")
    text = "\n".join(
        [
            "# written by testbed/kamailio.py",
            "[server:default]",
            "method = TLSv1.2+",
            "verify_certificate = no",
            "require_certificate = no",
            f"private_key = {key}",
            f"certificate = {cert}",
            *([f"ca_list = {ca_file}"] if ca_file else []),
            "",
            *client,
            "",
        ]
    )
    path.write_text(text)
    return path


def render_config(
    path: Path,
    *,
    host: str,
    port: int,
    tls_port: int | None,
    tls_config: Path | None,
    target: tuple[str, int],
    transport: Transport,
    rewrite_ruri: bool,
    pass_503: bool,
    debug: int,
    fr_timer_ms: int,
    fr_inv_timer_ms: int,
) -> Path:
    mods = module_path()
    if mods is None:
        raise RuntimeError("kamailio modules not found (apt-get install kamailio)")
    target_host, target_port = target
    values = {
        "DEBUG": str(debug),
        "HOST": host,
        "PORT": str(port),
        "TLS_PORT": str(tls_port or 0),
        "TLS_CONFIG": str(tls_config or ""),
        "MODULE_PATH": str(mods),
        "TARGET_HOST": target_host,
        "TARGET_PORT": str(target_port),
        "TARGET_URI": f"sip:{target_host}:{target_port};transport={transport}",
        "FR_TIMER_MS": str(fr_timer_ms),
        "FR_INV_TIMER_MS": str(fr_inv_timer_ms),
    }
    text = TEMPLATE.read_text()
    for name, value in values.items():
        text = text.replace(f"@@{name}@@", value)
    if "@@" in text:
        raise ValueError(f"{TEMPLATE}: unfilled placeholder near {text[text.index('@@') :][:40]!r}")
    switches = {"WITH_TLS": tls_port is not None, "REWRITE_RURI": rewrite_ruri, "PASS_503": pass_503}
    defines = [name for name, on in switches.items() if on]
    header, body = text.split("\n", 1)  # "#!KAMAILIO" stays the first line
    path.write_text("\n".join([header, *(f"#!define {d}" for d in defines), body]))
    return path


def check_config(config: Path) -> subprocess.CompletedProcess[str]:
    """``kamailio -c``: parse the configuration and load its modules without running."""
    return subprocess.run(
        ["kamailio", "-c", "-f", str(config)], capture_output=True, text=True, timeout=30, check=False
    )


@contextmanager
def proxy(
    target: tuple[str, int],
    *,
    transport: Transport = "udp",
    workdir: Path | None = None,
    port: int | None = None,
    tls: tuple[Path, Path] | None = None,
    tls_port: int | None = None,
    ca_file: Path | None = None,
    verify_server: bool = True,
    server_name: str | None = None,
    rewrite_ruri: bool = True,
    pass_503: bool = False,
    debug: int = 1,
    fr_timer_ms: int = 2000,
    fr_inv_timer_ms: int = 10000,
    ready_timeout: float = 10,
) -> Iterator[KamailioProxy]:
    """kamailio relaying everything it gets on 127.0.0.1 to `target` (host, port) over `transport`.

    port: its UDP+TCP port (a free one by default). tls: (certificate, key) for its own TLS listener on
    `tls_port` (free by default); required when `transport` is "tls" (kamailio sends TLS only from a TLS
    socket). ca_file / verify_server / server_name: what its TLS client trusts, checks and asks for
    (SNI) when it connects to the target. rewrite_ruri: relayed initial requests get the target's
    host:port in their Request-URI (the user part stays); otherwise only the next hop is set.
    pass_503: a 503 to an INVITE reaches the caller as 503 (with its Retry-After); by default the
    proxy does what RFC 3261 16.7 says and tm does: the caller gets 500 (same reason phrase).
    debug: kamailio's log level (1 = NOTICE shows the PROXY lines; 3 = everything). fr_timer_ms /
    fr_inv_timer_ms: tm's timers (no reply / no final reply to an INVITE): 408 after these.
    Stopped on leaving the block, whatever happened; its files stay in `workdir`.
    """
    if transport not in ("udp", "tcp", "tls"):
        raise ValueError(f"transport must be udp, tcp or tls, not {transport!r}")
    if not _loopback(target[0]):
        raise ValueError(f"the target must be on loopback (127.0.0.0/8, ::1, localhost), not {target[0]!r}")
    if transport == "tls" and tls is None:
        raise ValueError("a TLS target needs tls=(cert, key): kamailio sends TLS only from a TLS listener")
    workdir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="kamailio-"))
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port_block(1, udp=True, tcp=True)
    tls_config = None
    if tls is not None:
        tls_port = tls_port or free_port_block(1, udp=False, tcp=True)
        cert, key = tls
        tls_config = write_tls_config(
            workdir / "tls.cfg",
            cert=Path(cert).resolve(),
            key=Path(key).resolve(),
            ca_file=Path(ca_file).resolve() if ca_file else None,
            verify_server=verify_server,
            server_name=server_name,
        )
    else:
        tls_port = None
    config = render_config(
        workdir / "kamailio.cfg",
        host=LOOPBACK,
        port=port,
        tls_port=tls_port,
        tls_config=tls_config,
        target=target,
        transport=transport,
        rewrite_ruri=rewrite_ruri,
        pass_503=pass_503,
        debug=debug,
        fr_timer_ms=fr_timer_ms,
        fr_inv_timer_ms=fr_inv_timer_ms,
    )
    listening = [("udp", port), ("tcp", port), *([("tcp", tls_port)] if tls_port is not None else [])]
    with _run(config, workdir, listening, ready_timeout) as proc:
        yield KamailioProxy(
            proc=proc,
            host=LOOPBACK,
            port=port,
            tls_port=tls_port,
            target=(target[0], int(target[1])),
            transport=transport,
            workdir=workdir,
            config_path=config,
        )


@contextmanager
def _run(
    config: Path, workdir: Path, listening: list[tuple[str, int]], ready_timeout: float
) -> Iterator[ManagedProcess]:
    """kamailio with `config` in the foreground, until every (proto, port) of `listening` is bound on
    loopback; stopped (with its workers) on leaving the block."""
    run_dir = workdir / "run"
    run_dir.mkdir(exist_ok=True)
    argv = [
        "kamailio",
        "-f", str(config),
        "-DD", "-E",  # main process in the foreground (workers are its children, same group); stderr
        "-m", "64", "-M", "8",  # shared / private memory, MB
        "-P", str(run_dir / "kamailio.pid"),
        "-Y", str(run_dir),  # runtime folder (default /run/kamailio)
        "-w", str(workdir),  # working folder (core files)
    ]  # fmt: skip
    with ManagedProcess(argv, name="kamailio", logdir=workdir, cwd=workdir, grace=3) as proc:

        def ready() -> bool:
            if not proc.running:
                return True
            return all(udp_port_bound(p) if proto == "udp" else tcp_port_bound(p) for proto, p in listening)

        wait_for(ready, ready_timeout, what=lambda: f"kamailio listening on {listening}\n{proc.tail()}")
        if not proc.running:
            check = check_config(config)
            raise RuntimeError(
                f"kamailio exited at start\n{proc.tail()}\n--- kamailio -c\n{check.stdout}{check.stderr}"
            )
        yield proc


# --------------------------------------------------------------------------------------------- registrar

REGISTRAR_TEMPLATE = Path(__file__).parent / "kamailio" / "registrar.cfg"

# modparam("auth", "algorithm", ...) of kamailio 5.6: "" is MD5 without algorithm= in the challenge
ALGORITHMS = ("", "MD5", "SHA-256")

# written into the configuration as string literals: no quote, backslash or pseudo-variable ($)
_CONFIG_SAFE = re.compile(r"[A-Za-z0-9._~!#%&*+,/:;=?@^{}()\[\]-]+")


@dataclass(frozen=True)
class Location:
    """One binding of kamailio's location table (usrloc), as its RPC ``ul.dump`` shows it."""

    aor: str  # the user part (use_domain is off)
    contact: str  # the Contact URI registered, e.g. "sip:alice@127.0.0.1:5070"
    expires: int | None  # seconds left; None for a permanent binding
    call_id: str
    cseq: int
    user_agent: str
    received: str  # the source address when it differs from the Contact (nat), else ""
    socket: str  # kamailio's socket it came in on, e.g. "udp:127.0.0.1:5060"
    raw: dict[str, object]


@dataclass
class KamailioRegistrar(_KamailioLog):
    """A running kamailio registrar + authenticating proxy (see :func:`registrar`)."""

    proc: ManagedProcess
    host: str
    port: int  # UDP and TCP
    rpc_port: int  # JSON-RPC over UDP
    user: str
    password: str
    domain: str  # the realm of the challenges
    algorithm: str
    target: tuple[str, int] | None
    workdir: Path
    config_path: Path

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``: where to send REGISTER and calls (UDP or TCP)."""
        return f"{self.host}:{self.port}"

    def uri(self, user: str | None = None, transport: Literal["udp", "tcp"] = "udp") -> str:
        """A Request-URI that reaches the registrar: the account's AOR by default."""
        suffix = "" if transport == "udp" else f";transport={transport}"
        return f"sip:{user or self.user}@{self.host}:{self.port}{suffix}"

    def rpc(self, method: str, *params: object, timeout: float = 2) -> object:
        """Call a kamailio RPC command (JSON-RPC over UDP, jsonrpcs module) and return its result.
        Raises RuntimeError with kamailio's error when it reports one."""
        request = {"jsonrpc": "2.0", "method": method, "id": 1}
        if params:
            request["params"] = list(params)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(timeout)
            s.sendto(json.dumps(request).encode(), (self.host, self.rpc_port))
            data, _ = s.recvfrom(65535)
        reply = json.loads(data)
        if "error" in reply:
            raise RuntimeError(f"kamailio RPC {method}: {reply['error']}")
        return reply.get("result")

    def locations(self, aor: str | None = None) -> list[Location]:
        """The bindings in the location table now (only those of `aor`, a user name, when given)."""
        found = []
        result = self.rpc("ul.dump")
        domains = result.get("Domains", []) if isinstance(result, dict) else []
        for domain in domains:
            for entry in domain.get("Domain", {}).get("AoRs", []) or []:
                info = entry.get("Info", {})
                for item in info.get("Contacts", []) or []:
                    c = item.get("Contact", {})
                    expires = c.get("Expires")
                    found.append(
                        Location(
                            aor=str(info.get("AoR", "")),
                            contact=str(c.get("Address", "")),
                            expires=expires if isinstance(expires, int) else None,
                            call_id=str(c.get("Call-ID", "")),
                            cseq=int(c.get("CSeq", 0) or 0),
                            user_agent=str(c.get("User-Agent", "")),
                            received=str(c.get("Received", "") or "").replace("[not set]", ""),
                            socket=str(c.get("Socket", "")),
                            raw=c,
                        )
                    )
        return [loc for loc in found if aor is None or loc.aor == aor]

    def wait_for_locations(
        self, aor: str | None = None, *, count: int = 1, timeout: float = 5
    ) -> list[Location]:
        """:meth:`locations` once there are (at least, or with count=0 exactly) `count` of them."""

        def enough() -> list[Location] | bool:
            now = self.locations(aor)
            if count == 0:
                return not now
            return now if len(now) >= count else False

        found = wait_for(
            enough,
            timeout,
            what=lambda: f"{count} binding(s) for {aor or 'any AOR'}: {self.locations(aor)}\n{self.report()}",
        )
        return found if isinstance(found, list) else []


def render_registrar_config(
    path: Path,
    *,
    host: str,
    port: int,
    rpc_port: int,
    user: str,
    password: str,
    domain: str,
    algorithm: str,
    qop: bool,
    max_expires: int,
    default_expires: int,
    nonce_expire: int,
    challenge_requests: bool,
    target: tuple[str, int] | None,
    target_transport: Literal["udp", "tcp"],
    debug: int,
    fr_timer_ms: int,
    fr_inv_timer_ms: int,
) -> Path:
    mods = module_path()
    if mods is None:
        raise RuntimeError("kamailio modules not found (apt-get install kamailio)")
    for name, value in (("user", user), ("password", password), ("domain", domain)):
        if not _CONFIG_SAFE.fullmatch(value):
            raise ValueError(f"{name} {value!r}: only letters, digits and {_CONFIG_SAFE.pattern[12:-2]!r}")
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, not {algorithm!r}")
    flags = 1 if qop else 0  # www_challenge/proxy_challenge: 1 = qop="auth", 16 = stale=true
    values = {
        "DEBUG": str(debug),
        "HOST": host,
        "PORT": str(port),
        "RPC_PORT": str(rpc_port),
        "MODULE_PATH": str(mods),
        "USER": user,
        "PASSWORD": password,
        "REALM": domain,
        "ALGORITHM": algorithm,
        "CHALLENGE_FLAGS": str(flags),
        "STALE_CHALLENGE_FLAGS": str(flags | 16),
        "MAX_EXPIRES": str(max_expires),
        "DEFAULT_EXPIRES": str(default_expires),
        "NONCE_EXPIRE": str(nonce_expire),
        "TARGET_URI": f"sip:{target[0]}:{target[1]};transport={target_transport}" if target else "",
        "FR_TIMER_MS": str(fr_timer_ms),
        "FR_INV_TIMER_MS": str(fr_inv_timer_ms),
    }
    text = REGISTRAR_TEMPLATE.read_text()
    for name, value in values.items():
        text = text.replace(f"@@{name}@@", value)
    if "@@" in text:
        raise ValueError(f"{REGISTRAR_TEMPLATE}: unfilled placeholder near {text[text.index('@@') :][:40]!r}")
    switches = {"CHALLENGE_REQUESTS": challenge_requests, "WITH_TARGET": target is not None}
    defines = [name for name, on in switches.items() if on]
    header, body = text.split("\n", 1)  # "#!KAMAILIO" stays the first line
    path.write_text("\n".join([header, *(f"#!define {d}" for d in defines), body]))
    return path


@contextmanager
def registrar(
    user: str,
    password: str,
    domain: str = "sipbridge.test",
    *,
    workdir: Path | None = None,
    port: int | None = None,
    algorithm: str = "",
    qop: bool = True,
    expires: int = 3600,
    default_expires: int | None = None,
    nonce_expire: int = 300,
    challenge_requests: bool = True,
    target: tuple[str, int] | None = None,
    target_transport: Literal["udp", "tcp"] = "udp",
    debug: int = 1,
    fr_timer_ms: int = 2000,
    fr_inv_timer_ms: int = 10000,
    ready_timeout: float = 10,
) -> Iterator[KamailioRegistrar]:
    """kamailio as a provider's registrar and authenticating proxy on 127.0.0.1 (UDP and TCP on
    ``reg.port``), with one account: `user` / `password` in the realm `domain`.

    - REGISTER is challenged (401, qop="auth" unless qop=False, ``algorithm=`` as given: "" (MD5 not
      named), "MD5" or "SHA-256"); good credentials save the binding in memory and get 200 with the
      contacts and their expires (what the client asked for, at most `expires`; `default_expires`
      without a wish, `expires` by default); a wrong password, or a good one for another user, gets
      403. A nonce older than `nonce_expire` seconds is re-challenged with stale=true.
    - Any other initial request whose From user is `user` is challenged the same way with 407
      (challenge_requests=False: not at all), then routed like every other one: to the contacts
      bound to its Request-URI user (``lookup("location")``) when there are any, else to `target`
      (host, port: the "PSTN" side of an outbound call, over `target_transport`) when given, else
      404. INVITE and SUBSCRIBE are record-routed; in-dialog requests follow their Route headers.

    What it did is in its log (:meth:`KamailioRegistrar.events`: ``challenge``, ``forbidden``,
    ``auth-ok``, ``saved``, ``lookup``, ``not-found``, ``relay`` ...); the location table is read
    over JSON-RPC (:meth:`KamailioRegistrar.locations`, :meth:`KamailioRegistrar.rpc`). Stopped on
    leaving the block; its files stay in `workdir`.
    """
    if target is not None and not _loopback(target[0]):
        raise ValueError(f"the target must be on loopback (127.0.0.0/8, ::1, localhost), not {target[0]!r}")
    workdir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="kamailio-reg-"))
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port_block(1, udp=True, tcp=True)
    rpc_port = free_udp_port()
    config = render_registrar_config(
        workdir / "kamailio.cfg",
        host=LOOPBACK,
        port=port,
        rpc_port=rpc_port,
        user=user,
        password=password,
        domain=domain,
        algorithm=algorithm,
        qop=qop,
        max_expires=expires,
        default_expires=expires if default_expires is None else default_expires,
        nonce_expire=nonce_expire,
        challenge_requests=challenge_requests,
        target=target,
        target_transport=target_transport,
        debug=debug,
        fr_timer_ms=fr_timer_ms,
        fr_inv_timer_ms=fr_inv_timer_ms,
    )
    listening = [("udp", port), ("tcp", port), ("udp", rpc_port)]
    with _run(config, workdir, listening, ready_timeout) as proc:
        yield KamailioRegistrar(
            proc=proc,
            host=LOOPBACK,
            port=port,
            rpc_port=rpc_port,
            user=user,
            password=password,
            domain=domain,
            algorithm=algorithm,
            target=(target[0], int(target[1])) if target else None,
            workdir=workdir,
            config_path=config,
        )
