"""The test bed: real SIP peers, the bridge processes and the hostile hosts, for tests and bench alike.

Both ``tests/`` and ``bench/`` import it; it imports neither.

- :mod:`.procs`: free ports, :class:`~.procs.ManagedProcess` (own process group, output in files,
  always stopped), :func:`~.procs.wait_until` / :func:`~.procs.wait_for`, :func:`~.procs.in_background`.
- :mod:`.bridge_proc`: the real ``sipbridge`` processes (bridge and reference agent);
  :mod:`.hostile_bridge`: the bridge the attack tests aim at.
- :mod:`.audio`: espeak-ng speech, sox conversions (WAV <-> raw mu-law), :func:`~.audio.compare`.
- :mod:`.sipp`: :func:`~.sipp.run_scenario` (UAC scenarios in ``scenarios/``), :func:`~.sipp.sipp_uas`.
- :mod:`.baresip`: :func:`~.baresip.run_call`, a real softphone call with both sides recorded.
- :mod:`.kamailio`: a real proxy / registrar in front of the bridge (configs in ``kamailio/``).
- :mod:`.impair`: an impairing UDP relay (``python -m testbed.impair``).
- :mod:`.rawsip`, :mod:`.attacker`: hand-made SIP and RTP; :mod:`.flood` (``python -m testbed.flood``)
  and :mod:`.attacks` (``python -m testbed.attacks``): the hostile hosts.
- :mod:`.tls_certs`: a throwaway CA and certificates.
- :mod:`.conformance_replay`: the RFC 4475 / 5118 replay, run inside ``unshare -n``.

The traps of each peer: shared/TESTING-PEERS.md (the shared/ folder beside the repository).
"""
