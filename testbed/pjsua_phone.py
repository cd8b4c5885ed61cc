"""A PJSIP softphone (pjsua2, PyPI ``pjsua2-python``) placing one call and reporting what it saw.

PJSIP is an independent SIP and media stack, the one inside many desk phones and SBCs: its SRTP
(SDES), RTCP and G.722 are what a trunk-grade peer does. It runs in its own process
(``python -m testbed.pjsua_phone``: PJSIP keeps threads and global state a test process should not
share) and writes one JSON report:

- ``answered``, ``status`` (the final response), ``duration_s``;
- ``codec`` and ``clock_rate`` of the stream, ``proto`` (``RTP/AVP`` or ``RTP/SAVP``): what the call
  really used;
- ``rtcp``: its own stream statistics: packets and loss each way, and whether it received our RTCP
  (``rx_reports``: sender/receiver reports seen from the far end, ``rtt_ms`` from them); RTCP on
  the RTP port when ``--rtcp-mux`` offers a=rtcp-mux (RFC 5761) and the answer has it too;
- ``played`` and ``recorded``: the WAV it sent (the microphone is a file) and the WAV of what it
  heard, for cross-correlation with testbed/audio.py;
- ``transferred_to``: the target of a REFER it took as the transferee (it then calls the target,
  sends the NOTIFYs, plays on and records that call; the figures are then the new call's).

``run_call`` is the test-side helper: it runs the process with a deadline and returns the report.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SRTP = {"off": 0, "optional": 1, "mandatory": 2}  # pjmedia_srtp_use


def available() -> bool:
    try:
        import pjsua2  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass(frozen=True)
class PjCall:
    """The report of one call, and where its files are."""

    report: dict[str, Any]
    played: Path
    recorded: Path
    log: Path

    @property
    def answered(self) -> bool:
        return bool(self.report.get("answered"))


def run_call(
    target: str,
    wav: Path,
    workdir: Path,
    *,
    seconds: float = 6.0,
    codec: str = "PCMU/8000/1",
    srtp: str = "off",
    clock_rate: int = 8000,
    rtcp_mux: bool = False,
    timeout: float = 60.0,
) -> PjCall:
    """Call ``target`` (``sip:user@host:port``) playing ``wav``; hang up after ``seconds`` answered."""
    workdir.mkdir(parents=True, exist_ok=True)
    report, recorded, log = workdir / "pjsua.json", workdir / "pjsua-heard.wav", workdir / "pjsua.log"
    argv = [
        sys.executable, "-m", "testbed.pjsua_phone", target,
        "--play", str(wav), "--record", str(recorded), "--report", str(report), "--log", str(log),
        "--seconds", str(seconds), "--codec", codec, "--srtp", srtp, "--clock-rate", str(clock_rate),
        *(["--rtcp-mux"] if rtcp_mux else []),
    ]  # fmt: skip
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(argv, cwd=root, capture_output=True, text=True, timeout=timeout, check=False)
    if not report.exists():
        raise RuntimeError(f"pjsua_phone wrote no report (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return PjCall(json.loads(report.read_text()), wav, recorded, log)


# ------------------------------------------------------------------------------ the phone process


def _main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    report: dict[str, Any] = {"answered": False, "status": None}
    try:
        _call(args, report)
    except Exception as exc:  # a report says what broke: the test shows it
        report["error"] = f"{type(exc).__name__}: {exc}"
    Path(args.report).write_text(json.dumps(report, indent=1))
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m testbed.pjsua_phone")
    p.add_argument("target")
    p.add_argument("--play", required=True)
    p.add_argument("--record", required=True)
    p.add_argument("--report", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--seconds", type=float, default=6.0)
    p.add_argument("--codec", default="PCMU/8000/1")
    p.add_argument("--srtp", choices=sorted(SRTP), default="off")
    p.add_argument("--clock-rate", type=int, default=8000, help="its audio clock: 16000 for G.722")
    p.add_argument("--rtcp-mux", action="store_true", help="offer a=rtcp-mux (RFC 5761)")
    return p


def _call(args: argparse.Namespace, report: dict[str, Any]) -> None:
    import pjsua2 as pj

    endpoint = pj.Endpoint()
    endpoint.libCreate()
    try:
        _start(pj, endpoint, args)
        phone = _Phone(pj, endpoint, args, report)
        try:
            phone.run()
        finally:
            phone.close()
    finally:
        with contextlib.suppress(Exception):
            endpoint.libDestroy()


def _start(pj: Any, endpoint: Any, args: argparse.Namespace) -> None:
    config = pj.EpConfig()
    config.uaConfig.threadCnt = 0
    config.uaConfig.mainThreadOnly = True  # callbacks on this thread, from libHandleEvents
    config.logConfig.level = 5
    config.logConfig.consoleLevel = 0
    config.logConfig.filename = args.log
    config.medConfig.noVad = True
    # the conference bridge at the phone's own rate: no resampling between the WAV files and G.711
    config.medConfig.clockRate = args.clock_rate
    config.medConfig.sndClockRate = args.clock_rate
    endpoint.libInit(config)
    transport = pj.TransportConfig()
    transport.port = 0
    transport.boundAddress = "127.0.0.1"
    endpoint.transportCreate(pj.PJSIP_TRANSPORT_UDP, transport)
    endpoint.libStart()
    endpoint.audDevManager().setNullDev()  # no sound card: the conference bridge runs on its clock
    for codec in endpoint.codecEnum2():
        endpoint.codecSetPriority(codec.codecId, 255 if codec.codecId == args.codec else 0)


class _Phone:
    def __init__(self, pj: Any, endpoint: Any, args: argparse.Namespace, report: dict[str, Any]) -> None:
        self.pj, self.endpoint, self.args, self.report = pj, endpoint, args, report
        account = pj.AccountConfig()
        account.idUri = "sip:pjsua@127.0.0.1"
        account.mediaConfig.srtpUse = SRTP[args.srtp]
        account.mediaConfig.srtpSecureSignaling = 0  # SDES over UDP: the tests' choice, on loopback
        account.mediaConfig.rtcpMuxEnabled = args.rtcp_mux
        account.mediaConfig.transportConfig.boundAddress = "127.0.0.1"
        self.account = pj.Account()
        self.account.create(account)
        self.player = pj.AudioMediaPlayer()
        self.player.createPlayer(args.play, pj.PJMEDIA_FILE_NO_LOOP)
        self.recorder = pj.AudioMediaRecorder()
        self.recorder.createRecorder(args.record)
        self.call = _call_class(pj)(self)
        self.first = self.call  # the call it placed; ``call`` becomes a transfer's new call
        self.answered_at: float | None = None
        self.ended = False

    def run(self) -> None:
        self.call.makeCall(self.args.target, self.pj.CallOpParam(True))
        deadline = time.monotonic() + 15 + self.args.seconds
        while not self.ended and time.monotonic() < deadline:
            self.endpoint.libHandleEvents(20)
            if self.answered_at is not None and time.monotonic() - self.answered_at >= self.args.seconds:
                self._read_stream()
                self.call.hangup(self.pj.CallOpParam())
                self._wait_end(3.0)
                break

    def _wait_end(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.ended and time.monotonic() < deadline:
            self.endpoint.libHandleEvents(20)

    def close(self) -> None:
        """Destroy the recorder (its WAV header is written then) and the player before the library."""
        self.recorder = self.player = self.call = self.first = None
        import gc

        gc.collect()

    def media_up(self, call: Any) -> None:
        audio = call.getAudioMedia(-1)
        self.player.startTransmit(audio)
        audio.startTransmit(self.recorder)

    def _read_stream(self) -> None:
        info = self.call.getStreamInfo(0)
        stat = self.call.getStreamStat(0)
        rtcp = stat.rtcp
        self.report.update(
            {
                "answered": True,
                "duration_s": round(time.monotonic() - (self.answered_at or time.monotonic()), 2),
                "codec": info.codecName,
                "clock_rate": info.codecClockRate,
                "proto": "RTP/SAVP" if info.proto == self.pj.PJMEDIA_TP_PROTO_RTP_SAVP else "RTP/AVP",
                "rtcp": {
                    "tx_packets": rtcp.txStat.pkt,
                    "rx_packets": rtcp.rxStat.pkt,
                    "rx_loss": rtcp.rxStat.loss,
                    "tx_loss_reported": rtcp.txStat.loss,  # what the far end's reports said
                    # pjmedia updates its tx statistics from each report the far end sends about
                    # our stream: their count is how many RTCP reports it received from us
                    "reports_received": rtcp.txStat.updateCount,
                    "rtt_ms": rtcp.rttUsec.last / 1000 if rtcp.rttUsec.n else None,
                },
            }
        )


def _call_class(pj: Any) -> type:
    class Call(pj.Call):
        def __init__(self, phone: _Phone) -> None:
            super().__init__(phone.account)
            self.phone = phone

        def onCallState(self, prm: Any) -> None:  # noqa: N802 (pjsua2's name)
            info = self.getInfo()
            self.phone.report["status"] = info.lastStatusCode
            if info.state == pj.PJSIP_INV_STATE_CONFIRMED and self.phone.answered_at is None:
                self.phone.answered_at = time.monotonic()
                self.phone.report["answered"] = True
            if info.state == pj.PJSIP_INV_STATE_DISCONNECTED and self is self.phone.call:
                self.phone.ended = True  # (the transferred call's end is not the phone's)

        def onCallTransferRequest(self, prm: Any) -> None:  # noqa: N802
            """A REFER (RFC 3515): accepted (202); the new call to the target is ours to follow."""
            self.phone.report["transferred_to"] = prm.dstUri
            new = Call(self.phone)
            prm.newCall = new
            self.phone.call = new

        def onCallMediaState(self, prm: Any) -> None:  # noqa: N802
            info = self.getInfo()  # kept: SWIG's view of info.media dangles once info is freed
            for media in info.media:
                if media.type == pj.PJMEDIA_TYPE_AUDIO and media.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                    self.phone.media_up(self)

    return Call


if __name__ == "__main__":
    raise SystemExit(_main())
