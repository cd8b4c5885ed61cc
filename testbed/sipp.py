"""Drive sipp (sip-tester 3.6.1): run a UAC scenario to completion, or keep a UAS running for a test.

Every run gets its own folder with sipp's error log, statistics CSV, final screen and (by default) a
trace of every SIP message, so a failing assertion can show what was on the wire:
``run_scenario(...).assert_success(calls=1)``.

Scenario files live in ``testbed/scenarios/`` and are named without their folder
(``run_scenario("uac_cancel", ...)``). Their keys (``[caller]``, ``[audio_file]``, ...) are given as
``keys={...}``; each is passed to sipp as ``-key NAME VALUE``. sipp 3.6.1 does not expand keys inside
``<exec rtp_stream="..."/>`` or ``play_pcap_audio="..."`` (it opens the file when it loads the
scenario), nor in a ``timeout="..."`` or a response's status code (read at load), so there the key
is written into a copy of the scenario in the run folder.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from .procs import (
    LOOPBACK,
    ManagedProcess,
    free_port_block,
    free_udp_port,
    tcp_port_listening,
    udp_port_bound,
    wait_for,
)

SCENARIOS_DIR = Path(__file__).parent / "scenarios"

# Keys every scenario in SCENARIOS_DIR may use; sipp refuses to load a scenario naming an unset key.
DEFAULT_KEYS: dict[str, str] = {"caller": "sipp"}

# Scenarios compiled into sipp (-sn NAME).
BUILTIN_SCENARIOS = frozenset(
    {"uac", "uas", "regexp", "branchc", "branchs", "uac_pcap", "3pcc-A", "3pcc-B", "3pcc-C-A", "3pcc-C-B"}
)

# sipp's exit codes (sipp(1)).
EXIT_CODES = {
    0: "all calls succeeded",
    1: "at least one call failed",
    97: "exit on internal command",
    99: "normal exit without calls processed",
    255: "fatal error (-1)",
    254: "fatal error binding a socket (-2)",
}

# transport= of run_scenario / sipp_uas -> sipp's -t (this sipp has no TLS: built without OpenSSL).
# Without one, sipp uses its default, u1 (UDP, one socket).
TRANSPORTS = {"udp": "u1", "tcp": "t1", "udp-per-call": "un", "tcp-per-call": "tn"}

# What sipp 3.6.1 reads when it loads a scenario, so keys there are written in by us: the files of
# <exec rtp_stream/play_pcap_audio/play_pcap_video="..."/>, a timeout="..." (of a <recv>, say), and
# a response's status code.
_LOAD_TIME_ATTRS = re.compile(r'\b(rtp_stream|play_pcap_audio|play_pcap_video|timeout)="([^"]*)"')
_STATUS_LINE = re.compile(r"^(\s*SIP/2\.0 )\[([A-Za-z_][A-Za-z0-9_-]*)\]", re.MULTILINE)
_KEY_REF = re.compile(r"\[([A-Za-z_][A-Za-z0-9_-]*)\]")


def available() -> bool:
    return shutil.which("sipp") is not None


def scenario_path(scenario: str | os.PathLike[str]) -> Path:
    """A scenario file: a path, or the name of one in SCENARIOS_DIR (with or without ``.xml``)."""
    if isinstance(scenario, str) and os.sep not in scenario:
        for candidate in (SCENARIOS_DIR / scenario, SCENARIOS_DIR / f"{scenario}.xml"):
            if candidate.is_file():
                return candidate
    path = Path(scenario)
    if path.is_file():
        return path
    known = ", ".join(sorted(p.stem for p in SCENARIOS_DIR.glob("*.xml")))
    raise FileNotFoundError(f"no sipp scenario {scenario!r} (scenarios here: {known})")


def render_scenario(scenario: Path, keys: Mapping[str, str], out_dir: Path) -> Path:
    """Copy `scenario` to `out_dir`, with `keys` written into the attributes sipp reads at load time."""
    text = scenario.read_text(encoding="latin-1")

    def fill(match: re.Match[str]) -> str:
        attr, value = match.group(1), match.group(2)

        def key(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in keys:
                raise ValueError(f'{scenario.name}: {attr}="{value}" needs the key {name!r} (keys={{...}})')
            return keys[name]

        return f'{attr}="{_KEY_REF.sub(key, value)}"'

    def status(match: re.Match[str]) -> str:
        name = match.group(2)
        if name not in keys:
            raise ValueError(f"{scenario.name}: a status line needs the key {name!r} (keys={{...}})")
        return match.group(1) + keys[name]

    out = out_dir / scenario.name
    out.write_text(_STATUS_LINE.sub(status, _LOAD_TIME_ATTRS.sub(fill, text)), encoding="latin-1")
    return out


def _free_sip_port(transport: str | None) -> int:
    """A port for sipp's SIP socket: free for UDP, and for TCP too when sipp will use TCP."""
    if transport in ("tcp", "tcp-per-call"):
        return free_port_block(1, udp=True, tcp=True)
    return free_udp_port()


def _key_value(value: str | os.PathLike[str]) -> str:
    return str(Path(value).resolve()) if isinstance(value, os.PathLike) else str(value)


# --------------------------------------------------------------------------------------------- results


@dataclass
class SippResult:
    """What a finished sipp run left behind."""

    returncode: int
    successful: int
    failed: int
    stats: dict[str, str]
    workdir: Path
    argv: list[str]
    errors: str = ""
    stdout: str = ""
    stderr: str = ""
    timed_out: bool = False
    failures: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.failed == 0 and not self.timed_out

    @property
    def messages_path(self) -> Path:
        return self.workdir / "messages.log"

    def messages(self) -> str:
        """The SIP messages sipp sent and received (when traced)."""
        try:
            return self.messages_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def report(self, message_lines: int = 80) -> str:
        meaning = EXIT_CODES.get(self.returncode, "?")
        lines = [
            f"$ {shlex.join(self.argv)}",
            f"sipp exit {self.returncode} ({meaning}){' after a TIMEOUT' if self.timed_out else ''}: "
            f"{self.successful} successful, {self.failed} failed calls",
        ]
        if self.failures:
            lines.append("failures: " + ", ".join(f"{k}={v}" for k, v in self.failures.items()))
        if self.errors.strip():
            lines += ["--- sipp error log", self.errors.strip()[-4000:]]
        if self.stderr.strip():
            lines += ["--- sipp stderr", self.stderr.strip()[-2000:]]
        messages = self.messages().splitlines() if message_lines > 0 else []
        if messages:
            lines += [f"--- last {message_lines} lines of {self.messages_path}", *messages[-message_lines:]]
        lines.append(f"(all files: {self.workdir})")
        return "\n".join(lines)

    def assert_success(self, calls: int = 1) -> None:
        """Fail with the whole story unless exactly `calls` calls succeeded and none failed."""
        if not (self.ok and self.successful == calls):
            raise AssertionError(f"expected {calls} successful call(s)\n{self.report()}")


def _parse_stats(path: Path) -> dict[str, str]:
    """Last row of sipp's -trace_stat CSV (semicolon separated), as {column: value}."""
    try:
        rows = [r for r in path.read_text(errors="replace").splitlines() if r.strip()]
    except FileNotFoundError:
        return {}
    if len(rows) < 2:
        return {}
    header, last = rows[0].split(";"), rows[-1].split(";")
    return {h: v for h, v in zip(header, last, strict=False) if h}


def _screen_count(screen: str, label: str) -> int:
    """The cumulative column of a counter on sipp's statistics screen."""
    found = re.findall(rf"{label}\s*\|\s*\d+\s*\|\s*(\d+)", screen)
    return int(found[-1]) if found else 0


def _collect(proc: ManagedProcess, workdir: Path, timed_out: bool) -> SippResult:
    stats = _parse_stats(workdir / "stats.csv")
    stdout = proc.stdout()
    screen = _read(workdir / "screen.log") + stdout
    if stats:
        successful = int(stats.get("SuccessfulCall(C)", "0") or 0)
        failed = int(stats.get("FailedCall(C)", "0") or 0)
    else:
        successful = _screen_count(screen, "Successful call")
        failed = _screen_count(screen, "Failed call")
    failures = {
        k.removesuffix("(C)"): int(v)
        for k, v in stats.items()
        if k.startswith("Failed") and k.endswith("(C)") and k != "FailedCall(C)" and v.isdigit() and int(v)
    }
    rc = proc.returncode
    return SippResult(
        returncode=-1 if rc is None else rc,
        successful=successful,
        failed=failed,
        stats=stats,
        workdir=workdir,
        argv=proc.argv,
        errors=_read(workdir / "errors.log"),
        stdout=stdout,
        stderr=proc.stderr(),
        timed_out=timed_out,
        failures=failures,
    )


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


# --------------------------------------------------------------------------------------------- running


def _argv(
    scenario: str | os.PathLike[str],
    target: str | None,
    workdir: Path,
    *,
    local_port: int,
    media_port: int,
    keys: Mapping[str, str | os.PathLike[str]] | None,
    calls: int | None,
    rate: float | None,
    limit: int | None,
    hold_ms: int | None,
    service: str | None,
    timeout: float | None,
    recv_timeout_ms: int | None,
    trace_messages: bool,
    auto_answer: bool,
    extra_args: Sequence[str],
    transport: str | None = None,
    local_ip: str = LOOPBACK,
) -> list[str]:
    all_keys = {**DEFAULT_KEYS, **{k: _key_value(v) for k, v in (keys or {}).items()}}
    if isinstance(scenario, str) and scenario in BUILTIN_SCENARIOS:
        argv = ["sipp", "-sn", scenario]
    else:
        argv = ["sipp", "-sf", str(render_scenario(scenario_path(scenario), all_keys, workdir))]
    if target:
        argv.append(target)
    argv += [
        "-nostdin",
        "-i", local_ip,
        "-p", str(local_port),
        "-mi", local_ip,
        "-mp", str(media_port),
        "-ci", LOOPBACK,
        "-cp", str(free_udp_port()),  # the control socket defaults to 0.0.0.0:8888
        "-trace_err", "-error_file", str(workdir / "errors.log"),
        "-trace_stat", "-stf", str(workdir / "stats.csv"), "-fd", "1",
        "-trace_screen", "-screen_file", str(workdir / "screen.log"),
    ]  # fmt: skip
    if transport is not None:
        if transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)}, not {transport!r}")
        argv += ["-t", TRANSPORTS[transport]]
    if trace_messages:
        argv += ["-trace_msg", "-message_file", str(workdir / "messages.log")]
    if auto_answer:
        argv.append("-aa")  # 200 to in-dialog INFO/NOTIFY/OPTIONS/UPDATE instead of failing the call
    for name, value in all_keys.items():
        argv += ["-key", name, value]
    if calls is not None:
        argv += ["-m", str(calls)]
    if rate is not None:
        argv += ["-r", f"{rate:g}"]
    if limit is not None:
        argv += ["-l", str(limit)]
    if hold_ms is not None:
        argv += ["-d", str(int(hold_ms))]
    if service is not None:
        argv += ["-s", service]
    if timeout is not None:
        argv += ["-timeout", f"{max(1, round(timeout))}s", "-timeout_error"]
    if recv_timeout_ms is not None:
        argv += ["-recv_timeout", str(int(recv_timeout_ms))]
    return argv + [str(a) for a in extra_args]


def run_scenario(
    scenario: str | os.PathLike[str],
    target: str,
    *,
    local_port: int | None = None,
    media_port: int | None = None,
    calls: int = 1,
    rate: float | None = None,
    limit: int | None = None,
    hold_ms: int | None = None,
    service: str | None = None,
    extra_args: Sequence[str] = (),
    timeout: float = 60,
    recv_timeout_ms: int = 5000,
    keys: Mapping[str, str | os.PathLike[str]] | None = None,
    workdir: Path | None = None,
    trace_messages: bool = True,
    auto_answer: bool = True,
    transport: str | None = None,
    local_ip: str = LOOPBACK,
) -> SippResult:
    """Run a UAC scenario against `target` ("127.0.0.1:PORT") until `calls` calls are done.

    local_port / media_port: sipp's SIP port (-p) and media port (-mp, which also takes +2 for video);
    free ones by default. rate: calls per second (-r); limit: concurrent calls (-l); hold_ms: the
    length of a bare ``<pause/>`` (-d); service: the Request-URI user (-s, sipp's default "service").
    timeout: sipp gives up after this many seconds (-timeout, -timeout_error), and is killed 10 s
    later if it has not. recv_timeout_ms: a missing expected message fails the call after this long.
    keys: scenario keys (Path values are made absolute). workdir: where the logs go (a new temporary
    folder by default: pass pytest's tmp_path). transport: "udp" or "tcp" (sipp -t u1 / t1; see
    TRANSPORTS), sipp's default (UDP) when not given. local_ip: sipp's SIP and media address (another
    loopback address, 127.0.0.2 say, to call from a second host). Never raises for a failed call.
    """
    workdir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="sipp-"))
    workdir.mkdir(parents=True, exist_ok=True)
    argv = _argv(
        scenario,
        target,
        workdir,
        local_port=local_port or _free_sip_port(transport),
        media_port=media_port or free_port_block(4),
        keys=keys,
        calls=calls,
        rate=rate,
        limit=limit,
        hold_ms=hold_ms,
        service=service,
        timeout=timeout,
        recv_timeout_ms=recv_timeout_ms,
        trace_messages=trace_messages,
        auto_answer=auto_answer,
        extra_args=extra_args,
        transport=transport,
        local_ip=local_ip,
    )
    timed_out = False
    with ManagedProcess(argv, name="sipp", logdir=workdir, cwd=workdir) as proc:
        try:
            proc.wait(timeout + 10)
        except subprocess.TimeoutExpired:
            timed_out = True
    return _collect(proc, workdir, timed_out)


@dataclass
class SippServer:
    """A sipp UAS running in the background (see :func:`sipp_uas`)."""

    proc: ManagedProcess
    port: int
    media_port: int
    workdir: Path

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def uri(self) -> str:
        return f"sip:service@{LOOPBACK}:{self.port}"

    def result(self, timeout: float = 10) -> SippResult:
        """Wait for sipp to finish (a UAS started with `calls`) and collect its result."""
        timed_out = False
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            self.proc.stop()
        return _collect(self.proc, self.workdir, timed_out)


@contextmanager
def sipp_uas(
    scenario: str | os.PathLike[str] = "uas",
    *,
    port: int | None = None,
    media_port: int | None = None,
    rtp_echo: bool = True,
    calls: int | None = None,
    keys: Mapping[str, str | os.PathLike[str]] | None = None,
    workdir: Path | None = None,
    hold_ms: int | None = None,
    trace_messages: bool = True,
    extra_args: Sequence[str] = (),
    ready_timeout: float = 5,
    transport: str | None = None,
) -> Iterator[SippServer]:
    """A sipp UAS on 127.0.0.1 for the duration of the `with` block; stopped on exit, whatever happens.

    The default is sipp's built-in ``uas`` with ``-rtp_echo``: it answers every INVITE (180, 200) and
    sends every RTP packet back to where it came from. Give a scenario file (e.g.
    ``"uas_reject"``, ``keys={"status": "503", "reason": "Service Unavailable"}``) for other answers;
    with `calls`, sipp exits after that many and :meth:`SippServer.result` tells how they went.
    `hold_ms` is the length of a bare ``<pause/>`` (-d), e.g. in ``uas_answer_then_bye``.
    `transport`: "tcp" listens for TCP on `port` instead of UDP (sipp -t t1; see TRANSPORTS).
    """
    workdir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="sipp-uas-"))
    workdir.mkdir(parents=True, exist_ok=True)
    tcp = transport in ("tcp", "tcp-per-call")
    port = port or _free_sip_port(transport)
    media_port = media_port or free_port_block(4)
    argv = _argv(
        scenario,
        None,
        workdir,
        local_port=port,
        media_port=media_port,
        keys=keys,
        calls=calls,
        rate=None,
        limit=None,
        hold_ms=hold_ms,
        service=None,
        timeout=None,
        recv_timeout_ms=None,
        trace_messages=trace_messages,
        auto_answer=True,
        extra_args=[*(["-rtp_echo"] if rtp_echo else []), *extra_args],
        transport=transport,
    )
    with ManagedProcess(argv, name="sipp-uas", logdir=workdir, cwd=workdir) as proc:
        wait_for(
            lambda: (tcp_port_listening(port) if tcp else udp_port_bound(port)) or not proc.running,
            ready_timeout,
            what=lambda: f"sipp UAS listening on {port}\n{proc.tail()}",
        )
        if not proc.running:
            raise RuntimeError(f"sipp UAS exited at start\n{proc.tail()}")
        yield SippServer(proc=proc, port=port, media_port=media_port, workdir=workdir)


@dataclass
class Traced:
    """One SIP message from sipp's -trace_msg log."""

    at: float  # when sipp logged it, seconds since the epoch (time.time() scale)
    sent: bool  # by sipp
    transport: str
    text: str
    lost: bool = False  # received, then dropped by sipp's -lost (logged, never acted on)

    @property
    def first_line(self) -> str:
        return self.text.split("\n", 1)[0].strip()

    @property
    def is_request(self) -> bool:
        return not self.first_line.startswith("SIP/2.0 ")

    @property
    def method(self) -> str:
        """The request's method, or a response's CSeq method."""
        if self.is_request:
            return self.first_line.split(" ", 1)[0]
        return (self.header("CSeq") or " ").split()[-1]

    @property
    def status(self) -> int | None:
        return None if self.is_request else int(self.first_line.split()[1])

    def header(self, name: str) -> str | None:
        head = self.text.split("\n\n", 1)[0]
        match = re.search(rf"^{re.escape(name)}\s*:\s*(.*?)\s*$", head, re.MULTILINE | re.IGNORECASE)
        return match.group(1) if match else None

    @property
    def body(self) -> str:
        parts = self.text.split("\n\n", 1)
        return parts[1] if len(parts) > 1 else ""


# sipp -trace_msg: each message follows a line of dashes and a timestamp. What -lost drops gets a
# note written without a line break, so the dashes of the next entry are not always at a line start:
# "UDP message lost (recv)." or "UDP message (retrans) lost (recv)." after a received message it then
# ignored, "UDP message voluntary lost (while sending)." instead of a message it never sent.
_TRACE_ENTRY = re.compile(
    r"-{20,} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)\n(UDP|TCP)[^\n]*message (sent|received)[^\n]*\n\n"
)
_LOST_NOTE = re.compile(r"(?:UDP|TCP) message (?:\(retrans\) |voluntary )?lost \((recv|while sending)\)\.")


def traced(result: SippResult) -> list[Traced]:
    """What sipp sent and received, in order; ``lost`` marks a received message that -lost dropped."""
    text = result.messages().replace("\r\n", "\n")
    entries = list(_TRACE_ENTRY.finditer(text))
    messages: list[Traced] = []
    for entry, following in zip(entries, [*entries[1:], None], strict=True):
        chunk = text[entry.end() : following.start() if following else len(text)]
        notes = list(_LOST_NOTE.finditer(chunk))
        messages.append(
            Traced(
                at=datetime.fromisoformat(entry.group(1)).timestamp(),
                sent=entry.group(3) == "sent",
                transport=entry.group(2),
                text=chunk[: notes[0].start() if notes else len(chunk)].strip("\n") + "\n",
                lost=any(n.group(1) == "recv" for n in notes),
            )
        )
    return messages


def lost_count(result: SippResult) -> tuple[int, int]:
    """How many messages sipp's -lost dropped: (received and ignored, never sent)."""
    notes = [m.group(1) for m in _LOST_NOTE.finditer(result.messages())]
    return notes.count("recv"), notes.count("while sending")
