"""Place a real softphone call with baresip 1.0.0 (headless) and keep both sides of the audio.

baresip reads its microphone from a WAV file (module aufile) and records, through the sndfile audio
filter, what it encoded (``dump-*-enc.wav``: what it sent) and what it decoded (``dump-*-dec.wav``:
what it heard). Its speaker is aubridge, which discards the audio without a sound card (ALSA's null
device costs a whole core: baresip busy-loops on it).

Three things to know when reading the recordings:
- baresip hangs up when the input file ends, so :func:`run_call` pads (or cuts) the input to the
  call length it is asked for;
- ``dec.wav`` starts with the first RTP packet received, not when the call started: a lag measured
  between the two files is the delay *after* the far end started sending, not the round trip.
- G.711 in baresip 1.0.0 has no loss concealment (``module plc.so`` changes nothing): for a gap in
  the sequence numbers the packet after it is decoded twice, its copy standing in for the lost frame.
  A single loss keeps ``dec.wav``'s timeline (the repeated frames sit exactly where the relay dropped
  packets), but a double loss gets one copy only and everything after it slips 20 ms earlier, which
  halves a single-lag correlation: use :func:`compare_recording_windowed` on lossy calls. The
  jitter buffer size (``jitter_buffer_delay``, in frames; 5-10 here) does not change this, and 5-10
  frames already absorb 40 ± 40 ms of jitter (a call with only that on the return leg measures 0.975,
  as a clean one).

Signalling over TCP or TLS: ``run_call(..., transport="tls", ca_file=certs.ca_cert)`` dials the
target with ``;transport=tls``. baresip 1.0.0 (libre 1.1.0) does NOT verify the server's certificate:
it completes the handshake with any certificate, whatever ``sip_cafile`` says (there is no
``sip_verify_server`` before baresip 1.1). Its calls prove that a server speaks SIP over TLS, not that
its certificate would be accepted: check that with kamailio (testbed/kamailio.py, which verifies
the chain) or Python's ssl.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import time
import wave
from dataclasses import dataclass
from pathlib import Path

from . import audio
from .procs import LOOPBACK, ManagedProcess, free_port_block

MODULE_PATH = Path("/usr/lib/baresip/modules")

# codec name -> (module, audio_codecs value on the account line). G.722 and Opus are for calls to the
# bridge (sipp's echoing UAS answers PCMU whatever is offered).
CODECS: dict[str, tuple[str, str]] = {
    "PCMU": ("g711.so", "PCMU/8000/1"),
    "PCMA": ("g711.so", "PCMA/8000/1"),
    "G722": ("g722.so", "G722/16000/1"),  # baresip names it by its audio rate, SDP says G722/8000
    "OPUS": ("opus.so", "opus/48000/2"),
}

# baresip's aufile source must be at the codec's audio rate and channels (it does not convert)
AUDIO_RATE = {"G722": 16000, "OPUS": 48000}
AUDIO_CHANNELS = {"OPUS": 2}  # baresip's opus/48000/2 (it offers stereo=1)

# What baresip 1.0.0 prints (stdout) at the milestones of a call.
# The far end's BYE shows as "session closed: Connection reset by peer"; a rejection as
# "session closed: 503 Service Unavailable" (and no "terminated" line); baresip's own hang-up (its
# input file ended) only as "terminated".
ESTABLISHED = re.compile(r"Call established: (\S+)")
TERMINATED = re.compile(r"Call with (\S+) terminated \(duration: ([^)]*)\)")
CLOSED = re.compile(r"session closed: ([^\r\n]*)")
PROGRESS = re.compile(r"call: SIP Progress: (\d{3}) ")
REMOTE_BYE = "Connection reset by peer"
RECEIVED_EVENT = re.compile(r"received event: '(.)' \(end=([01])\)")


def available() -> bool:
    return shutil.which("baresip") is not None and (MODULE_PATH / "aufile.so").exists()


@dataclass
class CallRecording:
    """What one baresip call left behind."""

    sent: Path | None  # dump-*-enc.wav: the audio baresip encoded and sent
    heard: Path | None  # dump-*-dec.wav: the audio baresip received and decoded
    log: Path  # baresip's stdout
    returncode: int | None
    workdir: Path
    argv: list[str]
    established: bool
    progress: list[int]  # provisional response codes seen (100, 180, 183, ...)
    closed_reason: str | None  # "503 Service Unavailable", "Connection reset by peer" (a BYE), ...
    ended: str | None  # "Call with ... terminated (duration: N secs)", if it got that far
    timed_out: bool = False

    @property
    def hung_up_by_far_end(self) -> bool:
        """The call was up and the far end ended it with a BYE (not baresip, at the end of its file)."""
        return self.established and self.closed_reason == REMOTE_BYE

    def log_text(self) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        # the status line is redrawn with \r: keep the last state of each line
        return "\n".join(line.rsplit("\r", 1)[-1] for line in text.splitlines())

    def report(self, lines: int = 60) -> str:
        tail = "\n".join(self.log_text().splitlines()[-lines:])
        err = self.workdir / "baresip.err"
        err_text = err.read_text(errors="replace").strip() if err.exists() else ""
        return (
            f"$ {' '.join(self.argv)}\nbaresip exit {self.returncode}, established={self.established}, "
            f"progress={self.progress}, closed_reason={self.closed_reason!r}, ended={self.ended!r}, "
            f"timed_out={self.timed_out}\n"
            f"sent={self.sent}\nheard={self.heard}\n--- log (last {lines} lines)\n{tail}"
            + (f"\n--- stderr\n{err_text[-2000:]}" if err_text else "")
        )


def write_config(
    config_dir: Path,
    *,
    sip_port: int,
    wav_in: Path,
    record_dir: Path,
    caller: str,
    display_name: str | None,
    codec: str,
    extra_config: str = "",
    ca_file: Path | None = None,
    certificate: Path | None = None,
    account_params: str = "",
) -> None:
    """The three files baresip reads from ``-f DIR``: config, accounts, contacts.

    account_params: more ``;name=value`` parameters for the account line (e.g. ``;ptime=30``).

    ca_file: ``sip_cafile`` (CAs for TLS; loaded, but baresip 1.0.0 does not check the server with
    them). certificate: ``sip_certificate``, the private key and certificate in one PEM file, which
    baresip presents on its TLS listener (sip_port + 1) and as a TLS client.
    """
    if codec not in CODECS:
        raise ValueError(f"codec {codec!r} not supported here (known: {', '.join(CODECS)})")
    module, codec_spec = CODECS[codec]
    config_dir.mkdir(parents=True, exist_ok=True)
    tls_config = "".join(
        f"{name}\t\t{Path(path).resolve()}\n"
        for name, path in (("sip_cafile", ca_file), ("sip_certificate", certificate))
        if path is not None
    )
    (config_dir / "config").write_text(
        f"""\
# written by testbed/baresip.py
poll_method		epoll
sip_listen		{LOOPBACK}:{sip_port}
net_interface		{LOOPBACK}
call_max_calls		1
call_local_timeout	30

audio_source		aufile,{wav_in}
audio_player		aubridge,sink
audio_alert		aubridge,alert
audio_level		no
audio_buffer		20-160
ausrc_format		s16
auplay_format		s16
jitter_buffer_delay	5-10
rtcp_mux		no
rtp_stats		no

module_path		{MODULE_PATH}
module			{module}
module			sndfile.so
module			aufile.so
module			aubridge.so
module_tmp		account.so
module_app		menu.so
{tls_config}
snd_path		{record_dir}
statmode_default	off
ringback_disabled	yes
{extra_config}
"""
    )
    name = f'"{display_name}" ' if display_name else ""
    (config_dir / "accounts").write_text(
        f"{name}<sip:{caller}@{LOOPBACK}:{sip_port}>;regint=0;audio_codecs={codec_spec}{account_params}\n"
    )
    (config_dir / "contacts").write_text("")


def _prepare_input(wav_in: Path, workdir: Path, seconds: float, rate: int, channels: int = 1) -> Path:
    """`rate` (the codec's audio rate) 16-bit copy of `wav_in` on `channels` (the same speech on
    each), exactly `seconds` long (silence-padded or cut)."""
    out = workdir / "input.wav"
    subprocess.run(
        ["sox", "-D", str(wav_in), "-r", str(rate), "-c", str(channels), "-b", "16", "-e", "signed-integer",
         str(out),
         "pad", "0", f"{seconds:g}", "trim", "0", f"{seconds:g}"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    with wave.open(str(out), "rb") as w:
        assert w.getnchannels() == channels and w.getframerate() == rate
    return out


def run_call(
    target: str,
    wav_in: Path,
    workdir: Path,
    seconds: float,
    *,
    codec: str = "PCMU",
    sip_port: int | None = None,
    caller: str = "caller",
    display_name: str | None = None,
    answer_timeout: float = 10.0,
    sip_trace: bool = False,
    extra_config: str = "",
    transport: str | None = None,
    ca_file: Path | None = None,
    certificate: Path | None = None,
    account_params: str = "",
) -> CallRecording:
    """Dial `target` (``sip:user@127.0.0.1:PORT``), play `wav_in` for `seconds`, hang up, and return
    the recordings.

    The call lasts `seconds` from when baresip's audio starts (the input is padded with silence or
    cut to that length; baresip hangs up when it ends). `caller` is the From user (the caller identity
    the bridge sees), `display_name` its display name. baresip is stopped as soon as the call is over,
    and at the latest `answer_timeout` + `seconds` + 5 s after it started, whatever happened.

    transport: "udp", "tcp" or "tls" adds ``;transport=...`` to `target` (unless it names one), so the
    call's signalling goes over it; baresip listens on `sip_port` (UDP, TCP) and `sip_port` + 1 (TLS).
    ca_file / certificate: see :func:`write_config` (baresip 1.0.0 does not verify TLS servers).
    sip_trace: baresip prints every SIP message it sends and receives into its log (-s).
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if not target.startswith(("sip:", "sips:")):
        target = f"sip:{target}"
    if transport is not None:
        if transport not in ("udp", "tcp", "tls"):
            raise ValueError(f"transport must be udp, tcp or tls, not {transport!r}")
        if ";transport=" not in target.lower():
            target = f"{target};transport={transport}"
    sip_port = sip_port or free_port_block(2, udp=True, tcp=True)  # UDP+TCP on it, TLS (TCP) on +1
    rate, channels = AUDIO_RATE.get(codec, 8000), AUDIO_CHANNELS.get(codec, 1)
    wav = _prepare_input(Path(wav_in), workdir, seconds, rate=rate, channels=channels)
    config_dir = workdir / "baresip-config"
    record_dir = workdir / "recordings"
    record_dir.mkdir(exist_ok=True)
    write_config(
        config_dir,
        sip_port=sip_port,
        wav_in=wav,
        record_dir=record_dir,
        caller=caller,
        display_name=display_name,
        codec=codec,
        extra_config=extra_config,
        ca_file=ca_file,
        certificate=certificate,
        account_params=account_params,
    )
    limit = seconds + answer_timeout
    argv = ["baresip", "-f", str(config_dir), "-t", str(math.ceil(limit) + 1), "-e", f"/dial {target}"]
    if sip_trace:
        argv.insert(1, "-s")

    timed_out = False
    with ManagedProcess(argv, name="baresip", logdir=workdir, cwd=workdir) as proc:
        deadline = time.monotonic() + limit + 5
        closed_at: float | None = None
        while proc.running:
            log = proc.stdout()
            if closed_at is None and CLOSED.search(log):
                closed_at = time.monotonic()
            # baresip would idle until -t once the call is over: SIGTERM makes it exit cleanly at once
            # (after "session closed", give it a moment to write "terminated" and close the files)
            if TERMINATED.search(log) or (closed_at is not None and time.monotonic() - closed_at > 0.5):
                break
            if time.monotonic() > deadline:
                timed_out = True
                break
            time.sleep(0.05)
    log = proc.stdout()
    closed = CLOSED.findall(log)
    terminated = TERMINATED.search(log)
    return CallRecording(
        sent=_newest(record_dir, "dump-*-enc.wav"),
        heard=_newest(record_dir, "dump-*-dec.wav"),
        log=proc.stdout_path,
        returncode=proc.returncode,
        workdir=workdir,
        argv=proc.argv,
        established=bool(ESTABLISHED.search(log)),
        progress=[int(code) for code in PROGRESS.findall(log)],
        closed_reason=closed[-1].strip() if closed else None,
        ended=terminated.group(0) if terminated else None,
        timed_out=timed_out,
    )


def _newest(folder: Path, pattern: str) -> Path | None:
    found = sorted(folder.glob(pattern), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def compare_recording(rec: CallRecording, max_lag_s: float = 2.0) -> audio.AudioMatch:
    """How well what baresip heard matches what it sent (for an echoing far end)."""
    if rec.sent is None or rec.heard is None:
        raise AssertionError(f"baresip left no recording\n{rec.report()}")
    return audio.compare_files(rec.sent, rec.heard, rate=8000, max_lag_s=max_lag_s)


def compare_recording_windowed(rec: CallRecording) -> audio.WindowedMatch:
    """Like :func:`compare_recording`, second by second at each second's own lag
    (:func:`audio.compare_windowed`): for calls whose delay moves (jitter buffers, lost packets)."""
    if rec.sent is None or rec.heard is None:
        raise AssertionError(f"baresip left no recording\n{rec.report()}")
    return audio.compare_files_windowed(rec.sent, rec.heard, rate=8000)


def digits_heard(rec: CallRecording) -> list[str]:
    """The RFC 4733 digits baresip decoded from the far end's RTP, in order (one per key press).

    baresip 1.0.0 prints ``received event: '5' (end=0)`` when an event starts and ``(end=1)`` when
    it ends; a press is a start that follows an end (or nothing).
    """
    digits: list[str] = []
    pressed = False
    for key, end in RECEIVED_EVENT.findall(rec.log_text()):
        if end == "1":
            pressed = False
        elif not pressed:
            digits.append(key)
            pressed = True
    return digits
