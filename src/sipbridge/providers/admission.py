"""Who may call in: trunks by source address, PBXs by digest, anyone while no provider says otherwise.

The UA core asks ``screen`` about every new request from outside a dialog, before it answers
anything (not even 100 Trying), so a refused source learns nothing it need not:

- a source in a provider's ``inbound_cidrs`` (or its registrar's address) is admitted as that
  provider;
- when some provider has ``inbound_username``, an INVITE from elsewhere is challenged (401) and
  admitted as the provider whose credentials it answers with (wrong ones: 403);
- once any provider restricts inbound calls, any other INVITE gets 403, or no answer at all with
  ``unknown_source_action = "drop"`` (which also leaves such sources' OPTIONS unanswered);
- with no restriction configured, everything is admitted (the quick start: any phone may call).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from ..sip.digest_server import ALGORITHMS, Challenge, DigestVerifier, Verified
from ..sip.gate import ADMIT, Screening
from ..sip.message import SipRequest
from ..sip.transport import Flow
from .provider import Provider, Providers

log = logging.getLogger(__name__)

DROP = Screening(drop=True)


@dataclass
class AdmissionCounts:
    by_address: int = 0
    by_digest: int = 0
    challenged: int = 0
    refused: int = 0
    dropped: int = 0


class InboundAdmission:
    def __init__(
        self,
        providers: Providers,
        realm: str = "sipbridge",
        unknown_source: str = "reject",
        algorithms: tuple[str, ...] = ALGORITHMS,
    ) -> None:
        self.providers = providers
        self._by_user: dict[str, Provider] = {
            p.config.inbound_username: p for p in providers if p.config.inbound_username is not None
        }
        self.verifier = None
        if self._by_user:
            self.verifier = DigestVerifier(realm, self._password_for, algorithms=algorithms)
        self.drop_unknown = unknown_source == "drop"
        self.counts = AdmissionCounts()

    @property
    def restricts(self) -> bool:
        return self.verifier is not None or self.providers.restricts_inbound

    def trusted(self, address: str) -> bool:
        """A configured trunk's address (never rate-limited)."""
        return self.providers.inbound_provider(address) is not None

    def from_provider(self, name: str, address: str) -> bool:
        """Whether ``address`` is one of provider ``name``'s (its inbound_cidrs or registrar): such a
        host may act in the dialogs of that provider's calls, not of other providers' calls."""
        provider = self.providers.get(name)
        return provider is not None and provider.accepts_source(address)

    def screen_stray(self, request: SipRequest, flow: Flow) -> Screening:
        """A request naming a dialog or transaction it may not act on: as any request but an INVITE
        from its source, so that strangers get nothing at all when ``unknown_source_action = "drop"``
        and a scan learns nothing from a 481 or 403."""
        screening = self._by_address(flow.remote[0], invite=False)
        assert screening is not None
        return screening

    def screen(self, request: SipRequest, flow: Flow) -> Screening:
        source = flow.remote[0]
        screening = self._by_address(source, invite=request.method == "INVITE")
        if screening is not None:
            return screening
        if self.verifier is not None:
            return self._authenticate(request, source)
        return self._unknown(source, f"source {source} matches no trunk (inbound_cidrs)")

    def _by_address(self, source: str, invite: bool) -> Screening | None:
        """What the source address alone decides; None for an INVITE from a stranger while inbound
        calls are restricted (its credentials, if any, decide)."""
        provider = self.providers.inbound_provider(source)
        if provider is not None:
            self.counts.by_address += invite
            return Screening(admitted_as=provider.name)
        if not self.restricts:
            return ADMIT
        if not invite:
            return DROP if self.drop_unknown else ADMIT
        return None

    def _authenticate(self, request: SipRequest, source: str) -> Screening:
        assert self.verifier is not None
        now = time.time()
        outcome = self.verifier.check(request, source, now)
        if isinstance(outcome, Verified):
            self.counts.by_digest += 1
            return Screening(admitted_as=self._by_user[outcome.username].name)
        if isinstance(outcome, Challenge):
            self.counts.challenged += 1
            headers = tuple(self.verifier.challenges(source, now, stale=outcome.stale))
            return Screening(status=401, headers=headers)
        # The caller is told no more than that (which of user and password was wrong is logged).
        return self._unknown(source, "authentication failed", outcome.reason)

    def _unknown(self, source: str, why: str, detail: str | None = None) -> Screening:
        said = f"{why} ({detail})" if detail else why
        if self.drop_unknown:
            self.counts.dropped += 1
            log.debug("INVITE from %s dropped: %s", source, said)
            return DROP
        self.counts.refused += 1
        log.info("INVITE from %s refused: %s", source, said)
        return Screening(status=403, warning=why)

    def _password_for(self, username: str) -> str | None:
        provider = self._by_user.get(username)
        return provider.config.inbound_password if provider is not None else None
