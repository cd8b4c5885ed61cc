"""RTP inactivity: counted from the last packet, not while the caller holds the call."""

from sipbridge.media_session.rtp_watch import RtpWatch


def test_rtp_timeout_counts_from_the_last_packet_and_not_while_on_hold():
    watch = RtpWatch(timeout=30.0)
    watch.start(90.0)
    assert watch.silent_for(now=100.0, last_packet_at=None) is None
    assert watch.silent_for(now=120.0, last_packet_at=100.0) is None
    assert watch.silent_for(now=131.0, last_packet_at=100.0) == 31.0
    watch.hold(True, now=140.0)
    assert watch.silent_for(now=200.0, last_packet_at=100.0) is None
    watch.hold(False, now=205.0)  # resumed: the count starts again from the resume
    assert watch.silent_for(now=230.0, last_packet_at=100.0) is None
    assert watch.silent_for(now=236.0, last_packet_at=100.0) == 31.0


def test_no_timeout_means_never():
    watch = RtpWatch(timeout=None)
    watch.start(0.0)
    assert watch.silent_for(now=1e6, last_packet_at=None) is None
