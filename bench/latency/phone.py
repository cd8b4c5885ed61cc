"""The phone side of the latency benchmark: one RTP socket, a sender thread and a receiver thread.

sipp does the call's signalling; its SDP names this socket's port. The bridge's first packet latches
the phone to where it came from (symmetric RTP). From then on the sender sends 20 ms PCMU frames on
its own 20 ms clock, started ``phase_ns`` after the latch packet arrived (so its frames meet the bridge's
shared 20 ms playout tick at that phase): silence, and a marker every ``every_ms``. Each
send is stamped just before ``send`` is called. The sender also runs the onset detector on exactly what
it sends, which must find every marker at the sample it was put: the detector's own bias (checked).

The receiver stamps every packet with the kernel's receive time (SO_TIMESTAMPNS, CLOCK_REALTIME, as
``bench/load/probe.py``), decodes it and records each onset the detector finds with that time.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from sipbridge.media.g711 import ulaw_decode, ulaw_encode

from ..common import SO_TIMESTAMPNS, TIMESTAMP_ANCILLARY, kernel_time
from .marker import FRAME, FRAME_NS, OnsetDetector, burst_frames, onset_offset

_RTP = struct.Struct("!BBHII")
SILENCE = b"\xff" * FRAME
LEAD_MS = 2000  # silence after the latch before the first marker (the jitter buffer settles)


@dataclass
class PhoneRecords:
    sent: list[dict[str, int]] = field(default_factory=list)  # markers: send time, planned sample
    heard: list[dict[str, int]] = field(default_factory=list)  # onsets: kernel arrival, sample, seq
    detector_errors: list[int] = field(default_factory=list)  # detected - planned, on the sent audio
    packets_out: int = 0
    packets_in: int = 0
    last_in_ns: int = 0
    last_out_ns: int = 0
    send_late_ns: list[int] = field(default_factory=list)


class Phone:
    def __init__(self, every_ms: int, phase_ns: int = 0, host: str = "127.0.0.1") -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock.bind((host, 0))
        self.sock.settimeout(0.2)
        self.records = PhoneRecords()
        self.latched = threading.Event()
        self.latched_ns = 0
        self._stop = threading.Event()
        self._phase_ns = phase_ns
        self._every = max(1, round(every_ms / 20))
        self._threads = [
            threading.Thread(target=self._receive, name="phone-rx", daemon=True),
            threading.Thread(target=self._send, name="phone-tx", daemon=True),
        ]

    @property
    def port(self) -> int:
        return self.sock.getsockname()[1]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout=2)
        self.sock.close()

    # -- receiving ------------------------------------------------------------------------------

    def _receive(self) -> None:
        detector = OnsetDetector()
        while not self._stop.is_set():
            try:
                data, ancillary, _flags, addr = self.sock.recvmsg(2048, TIMESTAMP_ANCILLARY)
            except TimeoutError:
                continue
            except OSError:
                return
            at = kernel_time(ancillary)
            if not self.latched.is_set():
                with contextlib.suppress(OSError):
                    self.sock.connect(addr)
                self.latched_ns = at
                self.latched.set()
            self._heard(detector, data, at)

    def _heard(self, detector: OnsetDetector, data: bytes, at: int) -> None:
        if len(data) != 12 + FRAME or data[1] & 0x7F != 0:
            return  # only plain 20 ms PCMU (no CSRC, no extension: the bridge sends none)
        self.records.packets_in += 1
        self.records.last_in_ns = at
        onset = detector.feed(ulaw_decode(data[12:]))
        if onset is not None:
            seq = int.from_bytes(data[2:4], "big")
            self.records.heard.append({"at_ns": at, "sample": onset, "seq": seq})

    # -- sending --------------------------------------------------------------------------------

    def _send(self) -> None:
        if not self._wait_latched():
            return
        detector = OnsetDetector()
        ssrc = int.from_bytes(np.random.default_rng().bytes(4), "big")
        lead = round(LEAD_MS / 20)
        origin = self.latched_ns + self._phase_ns
        origin += -(-(time.time_ns() - origin) // FRAME_NS) * FRAME_NS  # the first such time from now
        queued: list[np.ndarray] = []
        k = markers = 0
        while not self._stop.is_set():
            due = origin + k * FRAME_NS
            delay = due - time.time_ns()
            if delay > 0:
                time.sleep(delay / 1e9)
            planned = None
            if not queued and k >= lead and (k - lead) % self._every == 0:
                planned = onset_offset(markers)
                queued, markers = burst_frames(planned), markers + 1
            payload = ulaw_encode(queued.pop(0)) if queued else SILENCE
            header = _RTP.pack(0x80, 0, k & 0xFFFF, (k * FRAME) & 0xFFFFFFFF, ssrc)
            sent = time.time_ns()  # before the send: a stall in it counts against the bridge
            try:
                self.sock.send(header + payload)
            except OSError:
                return  # the bridge's port is gone: the call is over
            self._sent(detector, payload, planned, sent, due)
            k += 1

    def _wait_latched(self) -> bool:
        while not self.latched.wait(0.2):
            if self._stop.is_set():
                return False
        return True

    def _sent(
        self, detector: OnsetDetector, payload: bytes, planned: int | None, sent: int, due: int
    ) -> None:
        records = self.records
        records.packets_out += 1
        records.last_out_ns = sent
        records.send_late_ns.append(sent - due)
        found = detector.feed(ulaw_decode(payload))
        if planned is not None:
            records.sent.append({"at_ns": sent, "sample": planned})
            records.detector_errors.append(-1_000_000 if found is None else found - planned)
        elif found is not None:
            records.detector_errors.append(1_000_000)  # an onset where none was put
