"""Webhooks: a signed POST to the operator's URL for each thing that happens to a call.

``events`` makes an event's body from the call, ``signature`` signs it, ``outbox`` is the queue and
its retry schedule (pure: every step takes ``now``), ``sender`` the asyncio shell that POSTs.
"""
