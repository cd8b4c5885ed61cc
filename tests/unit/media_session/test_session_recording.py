"""A recorded call's MediaSession: from the answer on, the phone's audio on the left of the file."""

from __future__ import annotations

import asyncio
import wave
from dataclasses import replace
from pathlib import Path

import numpy as np

from sipbridge.config import Config
from sipbridge.media.g711 import ulaw_encode
from sipbridge.media_session import messages
from sipbridge.media_session.host import MediaHost
from sipbridge.media_session.messages import (
    CallAnswered,
    CloseMedia,
    OpenMedia,
    PhoneMedia,
    StartSending,
    UpdateMedia,
)
from sipbridge.rtp.packet import build_rtp_header
from sipbridge.rtp.ports import PortAllocator


def _host(low: int) -> MediaHost:
    config = replace(Config(), sip_listen=replace(Config().sip_listen, host="127.0.0.1"))
    return MediaHost(config, whip=None, ports=PortAllocator(low, low + 3))  # type: ignore[arg-type]


async def test_the_phones_audio_is_recorded_on_the_left_from_the_answer_on(tmp_path: Path) -> None:
    loop = asyncio.get_running_loop()
    phone, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
    path = tmp_path / "c1.wav"
    events: list[messages.MediaEvent] = []
    media = _host(41200).session(events.append)
    opened = await media.open(OpenMedia("c1", "inbound", "alice", None, str(path)))
    assert isinstance(opened, messages.MediaOpened)
    tone = (8000 * np.sin(2 * np.pi * 400 * np.arange(8000) / 8000)).astype(np.int16)
    try:
        media.update(UpdateMedia(PhoneMedia("PCMU", 0, None, phone.get_extra_info("sockname"))))
        media.start_sending(StartSending())
        assert not path.exists()  # not before the answer
        media.answered(CallAnswered())
        assert path.exists()
        for n in range(50):  # 1 s of the phone's speech, paced
            payload = ulaw_encode(tone[n * 160 : (n + 1) * 160])
            phone.sendto(build_rtp_header(0, n, n * 160, 1234) + payload, ("127.0.0.1", opened.port))
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)
    finally:
        await media.close(CloseMedia("test over"))
        phone.close()
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getframerate()) == (2, 8000)
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    left, right = data[0::2].astype(float), data[1::2]
    assert 0.9 <= len(left) / 8000 <= 1.5
    assert np.sqrt(np.mean(left**2)) > 3000  # the tone, after the jitter buffer's first frames
    spectrum = np.abs(np.fft.rfft(left))
    assert abs(np.argmax(spectrum) * 8000 / len(left) - 400) < 10
    assert not np.any(right)  # no agent in this test: silence on its side
    assert not [e for e in events if isinstance(e, messages.RecordingFailed)]


async def test_a_recording_that_cannot_start_is_said_and_the_call_goes_on(tmp_path: Path) -> None:
    events: list[messages.MediaEvent] = []
    media = _host(41210).session(events.append)
    await media.open(OpenMedia("c2", "inbound", None, None, str(tmp_path / "gone" / "c2.wav")))
    media.update(UpdateMedia(PhoneMedia("PCMU", 0, None, ("127.0.0.1", 9))))
    media.answered(CallAnswered())
    failed = [e for e in events if isinstance(e, messages.RecordingFailed)]
    assert len(failed) == 1 and "No such file or directory" in failed[0].reason
    await asyncio.sleep(0.05)  # its ticks run on
    final = await media.close(CloseMedia("done"))
    assert final.codec == "PCMU"
