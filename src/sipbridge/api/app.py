"""The REST API on port 8090: thin, validates input, asks the CallManager, serialises the answer.

Every route but ``/health`` needs ``Authorization: Bearer <key>`` once keys are configured; that,
the Host rule of a keyless API and the body cap are checked before anything is read (guard.py).
Errors are JSON ``{"error": "..."}`` that say what is wrong. ``/metrics`` is Prometheus text.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__, metrics
from ..calls.call import Call, CallState
from ..calls.context import HeaderError, outgoing_headers
from ..calls.manager import BUSY_RETRY_AFTER_S, CallManager, OutboundSlot
from ..calls.transfer import TransferRefused
from ..loop_lag import LoopLag
from ..media_session import messages as m
from ..providers.admission import InboundAdmission
from ..providers.policy import Refused
from ..providers.provider import DialRequest, Provider, Providers
from ..sip.useragent import UserAgent
from .guard import RequestGuard
from .metrics import BridgeCollector
from .recordings import recording_response

MAX_METADATA_ITEMS = 20
DEGRADED_LOOP_LAG_S = 0.5
MAX_METADATA_VALUE = 256
MAX_EVENT_BYTES = 4096  # POST /calls/{id}/events: one JSON object for the agent, at most this big


class Digits(BaseModel):
    """Body of POST /calls/{id}/dtmf."""

    model_config = ConfigDict(extra="forbid")

    digits: str = Field(pattern=r"^[0-9*#A-Da-d]{1,32}$", description="played to the phone as RFC 4733")


class Transfer(BaseModel):
    """Body of POST /calls/{id}/transfer."""

    model_config = ConfigDict(extra="forbid")

    to: str = Field(min_length=1, max_length=200, description="a number, or a sip: URI on the call's peer")
    mode: str = Field(default="auto", pattern="^(auto|refer|bridge)$", description="auto, refer or bridge")


class PlaceCall(BaseModel):
    """Body of POST /calls."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    provider: str = Field(min_length=1, max_length=64, description="name of a configured provider")
    to: str = Field(min_length=1, max_length=32, description="number or extension to dial")
    from_: str | None = Field(
        default=None,
        alias="from",
        max_length=32,
        pattern=r"^[A-Za-z0-9+._\-]+$",
        description="caller id (From user); default: the provider's caller_id",
    )
    ring_timeout: float | None = Field(default=None, gt=0, le=300, description="seconds to ring")
    max_duration: float | None = Field(default=None, gt=0, le=86400, description="seconds, then BYE")
    metadata: dict[str, str] | None = Field(default=None, description="kept on the call resource")
    headers: dict[str, str] | None = Field(
        default=None, description="X- headers and User-to-User for the INVITE (no CR/LF)"
    )

    @field_validator("headers")
    @classmethod
    def _sendable_headers(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is not None:
            try:
                outgoing_headers(value)
            except HeaderError as exc:
                raise ValueError(str(exc)) from None
        return value

    record: bool | None = Field(
        default=None,
        strict=True,
        description="record the call (false: not); default: as the record settings say",
    )

    @field_validator("metadata")
    @classmethod
    def _small_metadata(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is None:
            return None
        if len(value) > MAX_METADATA_ITEMS:
            raise ValueError(f"at most {MAX_METADATA_ITEMS} metadata items")
        if any(len(k) > 64 or len(v) > MAX_METADATA_VALUE for k, v in value.items()):
            raise ValueError(f"metadata keys up to 64 and values up to {MAX_METADATA_VALUE} characters")
        return value


def create_app(
    manager: CallManager,
    providers: Providers | None = None,
    ua: UserAgent | None = None,
    api_keys: tuple[str, ...] = (),
    degraded_load: float = 0.8,
    loop_lag: LoopLag | None = None,
    admission: InboundAdmission | None = None,
) -> FastAPI:
    providers = providers or Providers(())
    loop_lag = loop_lag or LoopLag()
    collector = BridgeCollector(manager, providers, ua, loop_lag, admission)
    app = FastAPI(
        title="sipbridge",
        version=__version__,
        summary="SIP phone calls into a voice agent",
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.add_middleware(RequestGuard, api_keys=api_keys)

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi() -> dict[str, Any]:
        return app.openapi()

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="sipbridge API")

    # Starlette's class: also the 404 of an unknown path, the 405 of a method a route lacks, a body
    # FastAPI cannot read; all answer {"error": ...} like ours.
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            {"field": ".".join(str(p) for p in e["loc"][1:]), "problem": e["msg"]} for e in exc.errors()
        ]
        return JSONResponse({"error": "invalid request", "details": details}, status_code=422)

    @app.get("/health")
    async def health() -> JSONResponse:
        """200 while ok or degraded, 503 while draining (a load balancer then sends no new calls)."""
        status = health_status(manager, degraded_load, loop_lag.recent_max)
        body = {
            "status": status,
            "version": __version__,
            "calls_active": len(manager.active),
            "max_calls": manager.max_calls,
            "load": round(manager.load, 3),
            "calls_total": manager.total_calls,
            "calls_rejected_busy": manager.rejected_busy,
            "rtp_ports_in_use": manager.media.ports_in_use,
            "rtp_ports_total": manager.media.ports_total,
            "asyncio_tasks": len(asyncio.all_tasks()),
            "workers": manager.media.views(),
        }
        return JSONResponse(body, status_code=503 if status == "draining" else 200)

    @app.get("/metrics", response_class=Response)
    async def prometheus_metrics() -> Response:
        await manager.refresh_stats()
        return Response(metrics.render(collector), media_type=metrics.CONTENT_TYPE)

    @app.get("/providers")
    async def list_providers() -> dict[str, Any]:
        return {"providers": [provider.to_dict() for provider in providers]}

    @app.get("/calls")
    async def list_calls() -> dict[str, Any]:
        await manager.refresh_stats()
        return {"calls": [call.to_dict() for call in manager.list_active()]}

    @app.post("/calls", status_code=201)
    async def place_call(body: PlaceCall, response: Response) -> dict[str, Any]:
        provider = providers.get(body.provider)
        if provider is None:
            known = ", ".join(sorted(providers.by_name)) or "none configured"
            raise HTTPException(404, f"no provider named {body.provider!r} (providers: {known})")
        if ua is None:
            raise HTTPException(503, "the SIP endpoint is not running")
        if manager.draining:
            retry = {"Retry-After": str(manager.drain_retry_after)}
            raise HTTPException(503, "the bridge is draining (shutting down): no new calls", headers=retry)
        _check_duration(body.max_duration, manager.config.max_call_duration or None)
        headers = tuple(outgoing_headers(body.headers or {}))
        if body.record and manager.config.recordings_dir is None:
            raise HTTPException(422, "record: this bridge has no recordings_dir to record calls to")
        dial = DialRequest(
            body.to,
            body.from_,
            body.ring_timeout,
            body.max_duration,
            body.metadata,
            headers,
            record=body.record,
        )
        number, slot = admit_outbound(manager, provider, body.to)
        try:
            target = await provider.target(number, dial)  # resolves the trunk's name: others go on
            call = manager.place_outbound(ua, target, slot)
        except Refused as exc:
            raise HTTPException(exc.status, exc.reason) from None
        finally:
            slot.release()  # placing failed (or was cancelled); a placed call holds its own place
        response.headers["Location"] = f"/calls/{call.id}"
        return call.to_dict()

    @app.get("/calls/{call_id}")
    async def get_call(call_id: str) -> dict[str, Any]:
        await manager.refresh_stats()
        call = manager.get(call_id)
        if call is None:
            raise HTTPException(404, f"no call with id {call_id!r}")
        return call.to_dict()

    @app.post("/calls/{call_id}/dtmf", status_code=202)
    async def send_dtmf(call_id: str, body: Digits) -> dict[str, Any]:
        """Digits to the phone as RFC 4733 events (an IVR menu); the call's `dtmf` lists what went."""
        call = _live_call(manager, call_id, answered=True)
        call.media.send_digits(m.SendDigits(body.digits.upper()))
        return {"id": call.id, "digits": body.digits.upper()}

    @app.post("/calls/{call_id}/events", status_code=202)
    async def send_event(call_id: str, request: Request) -> dict[str, Any]:
        """Any JSON object, sent to the agent on its `events` channel (at most 4 KiB)."""
        raw = await request.body()
        if len(raw) > MAX_EVENT_BYTES:
            raise HTTPException(413, f"an event is at most {MAX_EVENT_BYTES} bytes")
        try:
            event = json.loads(raw)
        except ValueError:
            raise HTTPException(422, "the body must be a JSON object") from None
        if not isinstance(event, dict):
            raise HTTPException(422, "the body must be a JSON object")
        call = _live_call(manager, call_id)
        call.media.send_agent_event(m.SendAgentEvent(event))
        return {"id": call.id, "sent": True}

    @app.post("/calls/{call_id}/transfer", status_code=202)
    async def transfer(call_id: str, body: Transfer) -> dict[str, Any]:
        """Hand the call to a person: the transfer's progress shows on the call as `transfer`."""
        call = _live_call(manager, call_id, answered=True)
        try:
            view = call.transfers.start(body.to, body.mode)
        except TransferRefused as exc:
            raise HTTPException(exc.status, str(exc)) from None
        return {"id": call.id, "transfer": view.to_dict()}

    @app.get("/calls/{call_id}/recording", response_class=Response)
    async def get_recording(call_id: str) -> Response:
        """The call's recording (WAV or Ogg/Opus); while it goes on, what is written so far."""
        call = manager.get(call_id)
        if call is None:
            raise HTTPException(404, f"no call with id {call_id!r}")
        return recording_response(manager.config, call_id, call.to_dict().get("recording"))

    @app.delete("/calls/{call_id}")
    async def hang_up(call_id: str) -> dict[str, Any]:
        """CANCEL before the answer, BYE after; a call that already ended is returned as it is."""
        call = await manager.hangup(call_id, "hung up through the API")
        if call is None:
            raise HTTPException(404, f"no call with id {call_id!r}")
        return call.to_dict()

    return app


def health_status(manager: CallManager, degraded_load: float, loop_lag_s: float = 0.0) -> str:
    """draining (shutting down); degraded (calls or RTP ports at degraded_load or more, the event
    loop half a second late in the last 10 s, or a media worker missing or stalled); or ok."""
    if manager.draining:
        return "draining"
    ports = manager.media.ports_in_use / manager.media.ports_total if manager.media.ports_total else 1.0
    busy = max(manager.load, ports) >= degraded_load or loop_lag_s >= DEGRADED_LOOP_LAG_S
    workers_down = any(worker["state"] != "up" for worker in manager.media.views())
    return "degraded" if busy or workers_down else "ok"


def admit_outbound(manager: CallManager, provider: Provider, to: str) -> tuple[str, OutboundSlot]:
    """The number to dial and the place the call holds, or HTTPException (403/422/429, 503 at
    max_calls). Synchronous on purpose: the caps are read and the place taken in one step, so
    concurrent requests cannot all pass the caps while each awaits its trunk's address."""
    try:
        number = provider.admit(to, manager.outbound_active(provider.name))
    except Refused as exc:
        retry = provider.limiter.retry_after(time.monotonic())
        headers = {"Retry-After": str(retry)} if exc.status == 429 else None
        raise HTTPException(exc.status, exc.reason, headers=headers) from None
    slot = manager.reserve_outbound(provider.name)
    if slot is None:
        retry = {"Retry-After": str(BUSY_RETRY_AFTER_S)}
        raise HTTPException(503, f"call limit of {manager.max_calls} reached (max_calls)", headers=retry)
    return number, slot


def _live_call(manager: CallManager, call_id: str, answered: bool = False) -> Call:
    """The call, or 404 (unknown) or 409 (ended, or not answered yet when ``answered``)."""
    call = manager.get(call_id)
    if call is None:
        raise HTTPException(404, f"no call with id {call_id!r}")
    if not isinstance(call, Call) or call.state is CallState.ENDED:  # (an ended call is its record)
        raise HTTPException(409, f"call {call_id} has ended")
    if answered and call.state is not CallState.ANSWERED:
        raise HTTPException(409, f"call {call_id} is not answered yet ({call.state.value})")
    return call


def _check_duration(asked: float | None, limit: float | None) -> None:
    """A call may ask to end sooner than max_call_duration, never later."""
    if asked is not None and limit is not None and asked > limit:
        raise HTTPException(
            422, f"max_duration {asked:g} s is above this bridge's max_call_duration of {limit:g} s"
        )
