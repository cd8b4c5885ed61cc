"""G.711 tables against a scalar transcription of Sun's g711.c and against audioop."""

import warnings

import numpy as np
import pytest

from sipbridge.media import g711

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

SEG_UEND = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)
SEG_AEND = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)


def _search(value: int, table: tuple[int, ...]) -> int:
    for i, bound in enumerate(table):
        if value <= bound:
            return i
    return len(table)


def ref_linear2ulaw(pcm: int) -> int:
    pcm >>= 2
    mask = 0xFF
    if pcm < 0:
        pcm, mask = -pcm, 0x7F
    pcm = min(pcm, 8159) + (0x84 >> 2)
    seg = _search(pcm, SEG_UEND)
    if seg >= 8:
        return 0x7F ^ mask
    return ((seg << 4) | ((pcm >> (seg + 1)) & 0xF)) ^ mask


def ref_ulaw2linear(code: int) -> int:
    code = ~code & 0xFF
    t = (((code & 0x0F) << 3) + 0x84) << ((code & 0x70) >> 4)
    return 0x84 - t if code & 0x80 else t - 0x84


def ref_linear2alaw(pcm: int) -> int:
    pcm >>= 3
    mask = 0xD5
    if pcm < 0:
        pcm, mask = -pcm - 1, 0x55
    seg = _search(pcm, SEG_AEND)
    if seg >= 8:
        return 0x7F ^ mask
    shift = 1 if seg < 2 else seg
    return ((seg << 4) | ((pcm >> shift) & 0xF)) ^ mask


def ref_alaw2linear(code: int) -> int:
    code ^= 0x55
    t = (code & 0x0F) << 4
    seg = (code & 0x70) >> 4
    if seg == 0:
        t += 8
    elif seg == 1:
        t += 0x108
    else:
        t = (t + 0x108) << (seg - 1)
    return t if code & 0x80 else -t


ALL_CODES = bytes(range(256))
ALL_PCM = np.arange(-32768, 32768, dtype=np.int32).astype(np.int16)


def test_ulaw_decode_all_codes():
    expected = np.array([ref_ulaw2linear(c) for c in range(256)], dtype=np.int16)
    np.testing.assert_array_equal(g711.ulaw_decode(ALL_CODES), expected)
    np.testing.assert_array_equal(
        g711.ulaw_decode(ALL_CODES), np.frombuffer(audioop.ulaw2lin(ALL_CODES, 2), "<i2")
    )


def test_alaw_decode_all_codes():
    expected = np.array([ref_alaw2linear(c) for c in range(256)], dtype=np.int16)
    np.testing.assert_array_equal(g711.alaw_decode(ALL_CODES), expected)
    np.testing.assert_array_equal(
        g711.alaw_decode(ALL_CODES), np.frombuffer(audioop.alaw2lin(ALL_CODES, 2), "<i2")
    )


def test_ulaw_encode_all_int16():
    expected = bytes(ref_linear2ulaw(int(x)) for x in ALL_PCM)
    assert g711.ulaw_encode(ALL_PCM) == expected
    assert g711.ulaw_encode(ALL_PCM) == audioop.lin2ulaw(ALL_PCM.astype("<i2").tobytes(), 2)


def test_alaw_encode_all_int16():
    expected = bytes(ref_linear2alaw(int(x)) for x in ALL_PCM)
    assert g711.alaw_encode(ALL_PCM) == expected
    assert g711.alaw_encode(ALL_PCM) == audioop.lin2alaw(ALL_PCM.astype("<i2").tobytes(), 2)


@pytest.mark.parametrize("codec", ["PCMU", "PCMA"])
def test_silence_code_is_zero_and_round_trips(codec):
    zeros = np.zeros(160, dtype=np.int16)
    assert g711.encode(codec, zeros) == bytes([g711.SILENCE[codec]]) * 160
    # A-law has no zero level: its silence code decodes to +8, the smallest step.
    assert np.abs(g711.decode(codec, bytes([g711.SILENCE[codec]]) * 160)).max() <= 8


@pytest.mark.parametrize("codec", ["PCMU", "PCMA", "pcmu"])
def test_decode_encode_is_identity_on_codes(codec):
    # Every code decodes to a value that encodes back to the same code (except μ-law's -0, 0x7F).
    pcm = g711.decode(codec, ALL_CODES)
    back = g711.encode(codec, pcm)
    diffs = [c for c in range(256) if back[c] != c]
    assert diffs == ([0x7F] if codec.upper() == "PCMU" else [])


def test_decode_returns_int16_and_accepts_bytes_like():
    out = g711.decode("PCMU", bytearray(b"\x00\xff"))
    assert out.dtype == np.int16
    assert out.tolist() == [-32124, 0]
    assert g711.decode("PCMA", memoryview(b"\xd5")).tolist() == [8]


def test_encode_handles_non_contiguous_input():
    pcm = np.arange(-1000, 1000, dtype=np.int16)
    assert g711.ulaw_encode(pcm[::2]) == g711.ulaw_encode(pcm[::2].copy())


def test_encode_rejects_non_int16():
    with pytest.raises(TypeError):
        g711.ulaw_encode(np.zeros(4, dtype=np.float32))


def test_unknown_codec():
    with pytest.raises(ValueError):
        g711.decode("G722", b"\x00")
    with pytest.raises(ValueError):
        g711.encode("opus", np.zeros(1, np.int16))
