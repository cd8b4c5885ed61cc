"""Rough per-20 ms-frame costs of each media stage (printed; run with -s to see them)."""

import time
from collections.abc import Callable

import numpy as np

from sipbridge.media import g711
from sipbridge.media.opus import OpusDecoder, OpusEncoder, OpusSettings
from sipbridge.media.pipeline import AgentToPhone, PhoneToAgent
from sipbridge.media.resample import PolyphaseResampler
from sipbridge.rtp.packet import build_rtp_header, parse_rtp

FRAMES = 1000


def per_frame_us(step: Callable[[int], object]) -> float:
    step(0)  # warm-up
    start = time.perf_counter()
    for i in range(FRAMES):
        step(i)
    return (time.perf_counter() - start) / FRAMES * 1e6


def test_per_frame_costs():
    t8 = np.arange(160 * FRAMES) / 8000
    pcm8 = np.round(10000 * np.sin(2 * np.pi * 440 * t8)).astype(np.int16)
    pcm48 = np.round(10000 * np.sin(2 * np.pi * 440 * np.arange(960 * FRAMES) / 48000)).astype(np.int16)
    ulaw = g711.ulaw_encode(pcm8)
    frames8 = [pcm8[i * 160 : (i + 1) * 160] for i in range(FRAMES)]
    frames48 = [pcm48[i * 960 : (i + 1) * 960] for i in range(FRAMES)]
    payloads = [ulaw[i * 160 : (i + 1) * 160] for i in range(FRAMES)]
    wideband = OpusSettings(application="voip", complexity=9, fec=True, pcm_rate=48000)
    encoder, decoder = OpusEncoder(wideband), OpusDecoder(48000)
    packets = [encoder.encode(f) for f in frames48]
    up, down = PolyphaseResampler(8000, 48000), PolyphaseResampler(48000, 8000)
    encoder2 = OpusEncoder(wideband)
    phone, agent = PhoneToAgent("PCMU", wideband), AgentToPhone("PCMU", 48000)
    rtp = [build_rtp_header(0, i, i * 160, 1234) + payloads[i] for i in range(FRAMES)]

    def agent_step(i: int) -> None:
        agent.push_pcm(frames48[i])
        agent.pop_frame()

    costs = {
        "ulaw decode (160 B)": per_frame_us(lambda i: g711.ulaw_decode(payloads[i])),
        "resample up 8k->48k poly": per_frame_us(lambda i: up.process(frames8[i])),
        "opus encode (960)": per_frame_us(lambda i: encoder2.encode(frames48[i])),
        "opus decode": per_frame_us(lambda i: decoder.decode(packets[i])),
        "resample down 48k->8k poly": per_frame_us(lambda i: down.process(frames48[i])),
        "ulaw encode (160)": per_frame_us(lambda i: g711.ulaw_encode(frames8[i])),
        "PhoneToAgent.push": per_frame_us(lambda i: phone.push(payloads[i])),
        "AgentToPhone push+pop": per_frame_us(agent_step),
        "rtp parse": per_frame_us(lambda i: parse_rtp(rtp[i])),
        "rtp build header": per_frame_us(lambda i: build_rtp_header(0, i, i * 160, 1234)),
    }
    print()
    for name, us in costs.items():
        print(f"  {name:30s} {us:8.1f} us/frame")
    # A 20 ms frame budget is 20000 us; a call must stay far below it.
    assert costs["PhoneToAgent.push"] + costs["AgentToPhone push+pop"] < 5000
