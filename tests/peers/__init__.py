"""Harness for integration tests that drive real SIP peers on 127.0.0.1.

- :mod:`.procs`: free ports, :class:`~.procs.ManagedProcess` (own process group, output in files,
  always stopped), :func:`~.procs.wait_until` / :func:`~.procs.wait_for`.
- :mod:`.audio`: espeak-ng speech, sox conversions (WAV <-> raw mu-law), :func:`~.audio.compare`.
- :mod:`.sipp`: :func:`~.sipp.run_scenario` (UAC scenarios in ``scenarios/``), :func:`~.sipp.sipp_uas`.
- :mod:`.baresip`: :func:`~.baresip.run_call`, a real softphone call with both sides recorded.

The traps of each peer: shared/TESTING-PEERS.md (the shared/ folder beside the repository).
"""
