"""The phone leg's codec table: what each codec is on the wire, and one coder per stream where it
keeps state."""

import numpy as np
import pytest

from sipbridge.media.phone_codec import CODECS, phone_codec


def test_the_table_says_what_each_codec_is() -> None:
    assert {name: (c.payload_type, c.pcm_rate, c.frame_samples) for name, c in CODECS.items()} == {
        "PCMU": (0, 8000, 160),
        "PCMA": (8, 8000, 160),
        "G722": (9, 16000, 320),
        "OPUS": (111, 48000, 960),
    }
    opus = phone_codec("opus")
    assert opus.relayed and opus.clock_rate == 48000 and opus.frame_ticks == 960
    assert not phone_codec("G722").relayed and phone_codec("G722").frame_ticks == 160
    with pytest.raises(ValueError, match="relayed"):
        opus.decoder()
    g722 = phone_codec("g722")
    assert g722.wideband and g722.stateful and g722.samples_per_tick == 2
    assert not phone_codec("PCMU").wideband and phone_codec("pcma").samples_per_tick == 1


def test_each_stream_of_a_stateful_codec_gets_its_own_coder() -> None:
    g722 = phone_codec("G722")
    tone = (np.sin(np.arange(320) * 0.3) * 8000).astype(np.int16)
    first, second = g722.encoder(), g722.encoder()
    assert first(tone) == second(tone)  # the same state from the same start
    first(tone)
    assert first(tone) != second(tone)  # one stream's history is not the other's
    assert len(g722.decoder()(first(tone))) == 320


def test_an_unknown_codec_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unsupported phone codec 'G729'.*PCMU, PCMA, G722"):
        phone_codec("G729")
