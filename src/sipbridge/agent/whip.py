"""WHIP signalling (RFC 9725) with the StreamCore extensions, over one shared aiohttp session.

POST the SDP offer, get back ``201 Created`` with the answer, the session URL (``Location``), the ETag
and a single-use resume token; ``DELETE`` the session URL to hang up. Every failure to get an answer is
an :class:`AgentUnavailable` whose reason is fit for a log line and a SIP reason phrase.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import aiohttp

logger = logging.getLogger(__name__)

RESOURCE_ID_HEADER = "X-StreamCore-Resource-Id"
DIRECTIONS = ("inbound", "outbound")
DELETE_TIMEOUT = 2.0
LATE_ANSWER_GRACE = 10.0  # how long past our deadline an answer is still read, to DELETE its session


class AgentUnavailable(Exception):
    """The agent could not be reached or refused the session.

    ``status`` is the HTTP status when the agent answered at all; ``retry_after`` is its
    ``Retry-After`` in seconds when it gave a number.
    """

    def __init__(self, reason: str, status: int | None = None, retry_after: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.retry_after = retry_after


@dataclass
class WhipSession:
    session_url: str
    answer_sdp: str
    etag: str = ""
    resume_token: str = ""
    resume_status: str = ""


class WhipClient:
    """Signalling to one WHIP endpoint, shared by every call."""

    def __init__(self, endpoint: str, *, token: str | None = None, timeout: float = 10.0) -> None:
        self.endpoint = endpoint
        self.token = token
        self.timeout = timeout
        self._http: aiohttp.ClientSession | None = None
        self._orphans: set[asyncio.Task[None]] = set()  # offers given up on, awaiting a late answer

    async def offer(
        self,
        sdp: str,
        *,
        resource_id: str | None,
        direction: str = "inbound",
        resume_token: str | None = None,
    ) -> WhipSession:
        """POST an SDP offer (with all ICE candidates) and return the agent's answer."""
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, not {direction!r}")
        headers = self._headers()
        headers["Content-Type"] = "application/sdp"
        if resource_id:
            headers[RESOURCE_ID_HEADER] = resource_id
        post = asyncio.ensure_future(self._post(sdp.encode(), headers, _query(direction, resume_token)))
        try:
            return await asyncio.wait_for(asyncio.shield(post), self.timeout)
        except TimeoutError:
            self._give_up(post)
            raise AgentUnavailable(self._no_answer()) from None
        except asyncio.CancelledError:  # the caller's own deadline, or the call went away
            self._give_up(post)
            raise

    async def _post(self, body: bytes, headers: dict[str, str], params: dict[str, str]) -> WhipSession:
        timeout = aiohttp.ClientTimeout(total=self.timeout + LATE_ANSWER_GRACE)
        try:
            async with self._session().post(
                self.endpoint, data=body, headers=headers, params=params, timeout=timeout
            ) as resp:
                return await self._read_answer(resp)
        except AgentUnavailable:
            raise
        except TimeoutError as exc:
            raise AgentUnavailable(self._no_answer()) from exc
        except aiohttp.ClientError as exc:
            raise AgentUnavailable(f"agent unreachable: {_describe(exc)} at {self.endpoint}") from exc

    def _no_answer(self) -> str:
        return f"agent unreachable: no answer within {self.timeout:g} s at {self.endpoint}"

    def _give_up(self, post: asyncio.Future[WhipSession]) -> None:
        """Nobody waits for this offer's answer any more: if the agent still answers it (within
        LATE_ANSWER_GRACE), the session it made is deleted, not left to hold a seat at the agent."""
        task = asyncio.ensure_future(self._delete_when_answered(post))
        self._orphans.add(task)
        task.add_done_callback(self._orphans.discard)

    async def _delete_when_answered(self, post: asyncio.Future[WhipSession]) -> None:
        try:
            session = await post
        except Exception:
            return  # no session was made, or none we could learn of
        logger.info(
            "WHIP answer from %s came after we gave up on it: deleting %s", self.endpoint, session.session_url
        )
        await self.delete(session.session_url)

    async def delete(self, session_url: str) -> None:
        """Hang up a session. Best effort: failures are logged, never raised."""
        if not session_url:
            return
        timeout = aiohttp.ClientTimeout(total=min(DELETE_TIMEOUT, self.timeout))
        try:
            async with self._session().delete(session_url, headers=self._headers(), timeout=timeout) as resp:
                _log_delete(session_url, resp.status, resp.reason)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # best effort by contract
            logger.warning("WHIP DELETE %s failed: %s", session_url, _describe(exc))

    async def close(self) -> None:
        for task in list(self._orphans):
            task.cancel()
        await asyncio.gather(*self._orphans, return_exceptions=True)
        if self._http is not None:
            http, self._http = self._http, None
            await http.close()

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession()
        return self._http

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    async def _read_answer(self, resp: aiohttp.ClientResponse) -> WhipSession:
        body = await resp.text()
        if resp.status != 201:
            raise _refused(resp, body)
        if not body.strip():
            raise AgentUnavailable("agent answered 201 without an SDP answer", status=201)
        location = resp.headers.get("Location", "")
        session_url = urljoin(str(resp.url), location) if location else ""
        if not location:
            logger.warning(
                "WHIP answer from %s has no Location: the session cannot be deleted", self.endpoint
            )
        elif not same_origin(session_url, self.endpoint):
            # Our DELETE carries the agent token: it goes to the agent we chose, never to a host
            # an answer names (a compromised or confused agent would collect the token).
            logger.warning(
                "WHIP answer from %s names a session at another origin (%s): it will not be deleted",
                self.endpoint,
                session_url[:200],
            )
            session_url = ""
        return WhipSession(
            session_url=session_url,
            answer_sdp=body,
            etag=resp.headers.get("ETag", ""),
            resume_token=resp.headers.get("X-Resume-Token", ""),
            resume_status=resp.headers.get("X-Resume-Status", ""),
        )


def same_origin(url: str, other: str) -> bool:
    """RFC 6454 origin (scheme, host, port) equality of two absolute http(s) URLs."""
    a, b = urlsplit(url), urlsplit(other)
    try:
        return (a.scheme, a.hostname, a.port or _DEFAULT_PORTS.get(a.scheme)) == (
            b.scheme,
            b.hostname,
            b.port or _DEFAULT_PORTS.get(b.scheme),
        )
    except ValueError:  # a port that is not a number
        return False


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _query(direction: str, resume_token: str | None) -> dict[str, str]:
    params: dict[str, str] = {}
    if direction == "outbound":
        params["direction"] = "outbound"
    if resume_token:
        params["resume"] = resume_token
    return params


def _refused(resp: aiohttp.ClientResponse, body: str) -> AgentUnavailable:
    reason = f"agent refused: {resp.status} {resp.reason or ''}".rstrip()
    retry_after_raw = resp.headers.get("Retry-After")
    retry_after: int | None = None
    if retry_after_raw:
        reason += f" (Retry-After {retry_after_raw})"
        retry_after = int(retry_after_raw) if retry_after_raw.strip().isdigit() else None
    detail = body.strip().splitlines()[0][:200] if body.strip() else ""
    if detail:
        reason += f": {detail}"
    return AgentUnavailable(reason, status=resp.status, retry_after=retry_after)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError):
        if isinstance(exc.os_error, ConnectionRefusedError):
            return "connection refused"
        return exc.os_error.strerror or str(exc.os_error)
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__


def _log_delete(session_url: str, status: int, reason: str | None) -> None:
    if 200 <= status < 300:
        logger.debug("WHIP DELETE %s: %s", session_url, status)
    elif status == 404:
        logger.info("WHIP DELETE %s: 404, the agent had already ended the session", session_url)
    else:
        logger.warning("WHIP DELETE %s: %s %s", session_url, status, reason or "")
