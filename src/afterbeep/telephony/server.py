"""The telephony server: one SIP user agent and one media engine, a task per call, routing,
overload protection and a phased shutdown.

Each INVITE becomes a `SipCall` run by a task the server owns (kept in a set, removed by a
done-callback). The router decides what runs: a handler (a call script), `Answer(handler)` (the
server answers, then runs the handler) or a SIP error code (404 by default). A ``quick_router``
is asked first, synchronously, in the callback that received the INVITE: when it knows the
route (None: ask the router), an `Answer` route is answered right there on a pre-bound RTP pair
(`MediaConfig.prebound`), so the 200 does not wait for the task to be scheduled behind a loop
turn's worth of RTP callbacks. Past ``max_calls`` calls in progress, new INVITEs get 503 with
Retry-After at once, before any media is bound; so do they past the calls that fit under the
event loop's busy target or the process's CPU target (`afterbeep.telephony.cpu`), in a burst on
a loaded node, or while the node is unhealthy (its event loop lags or waits for a CPU, or prompts
leave late: `afterbeep.domain.admission`), so that the calls already up
keep their timing and the proxy tries another node. Shutdown runs in phases with deadlines,
like uvicorn's: stop accepting (503), let calls in progress finish for ``drain_timeout``, end the rest (a
recording in progress ends as by hang-up, so the script keeps what was said) and give their
scripts ``hangup_timeout`` to finish, cancel what is left, then close the user agent (BYE to
any dialog still up) and the media engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import ipaddress
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from afterbeep.domain.admission import AdmissionGate, AdmissionPolicy, Refusal
from afterbeep.domain.phone import mask
from afterbeep.metrics import (
    ADMISSION_CALL_LIMIT,
    CALLS_REFUSED,
    LOOP_BUSY,
    LOOP_CPU_WAIT,
    LOOP_LAG,
    PROCESS_CPU_SHARE,
    PROMPT_LATE,
    SIP_INVITE_ROUTED,
)
from afterbeep.telephony.call import (
    CallSettings,
    DialFailed,
    OutboundCall,
    SipCall,
    dial,
)
from afterbeep.telephony.cpu import CpuReader, CpuReading
from afterbeep.telephony.interface import CallEnded
from afterbeep.telephony.media import MediaConfig, MediaEngine
from afterbeep.telephony.sip import Credentials, IncomingInvite, UAConfig, UserAgent
from afterbeep.telephony.sip.ua import parse_hostport

__all__ = [
    "Answer",
    "CallHandler",
    "QuickRouter",
    "Route",
    "Router",
    "ServerLimits",
    "ServerState",
    "ServerStats",
    "TelephonyServer",
    "telephony_configs",
]

log = logging.getLogger(__name__)

LAG_INTERVAL = 0.05  # seconds between two samples of the event loop's lag
REFUSAL_LOG_INTERVAL = 10.0  # seconds: refusals are logged at most this often, with their count

CallHandler = Callable[[SipCall], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Answer:
    """The route "answer, then run ``handler``" (the handler's own `answer()` is then a no-op)."""

    handler: CallHandler


Route = CallHandler | Answer | int  # a handler, answer + handler, or the SIP code (300-699)
Router = Callable[[IncomingInvite], Awaitable[Route]]
QuickRouter = Callable[[IncomingInvite], Route | None]  # synchronous; None: ask the Router


@dataclass(frozen=True, slots=True)
class ServerLimits:
    max_calls: int = 600
    retry_after: int = 30  # seconds, in the 503 of an overload or a shutdown
    route_timeout: float = 5.0  # a router that takes longer answers 503
    drain_timeout: float = 30.0  # shutdown: how long calls in progress may go on
    hangup_timeout: float = 5.0  # shutdown: how long scripts of ended calls may take to finish
    admission: AdmissionPolicy = field(default_factory=AdmissionPolicy)  # refusing while unhealthy


class ServerState(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    DRAINING = "draining"
    CLOSED = "closed"


@dataclass(slots=True)
class ServerStats:
    accepted: int = 0  # INVITEs given to the router
    rejected_overload: int = 0
    rejected_draining: int = 0
    handler_errors: int = 0
    ended_by_shutdown: int = 0
    cancelled_by_shutdown: int = 0
    rejected_unhealthy: int = 0  # by admission: capacity, bursts, loop lag, late prompts


def telephony_configs(
    sip_addr: str,
    sip_advertise: str | None,
    rtp_port_min: int,
    rtp_port_max: int,
    *,
    user_agent: str = "afterbeep",
    retry_after: int = 30,
) -> tuple[UAConfig, MediaConfig]:
    """Settings → configurations: SIP on UDP and TCP at ``sip_addr``; the advertised host is
    ``sip_advertise`` or the listen host, never a wildcard (ValueError); RTP binds next to SIP
    and advertises the same host (resolved once if it is a name)."""
    listen_host, port = parse_hostport(sip_addr)
    advertise = sip_advertise or listen_host
    adv_host, _ = parse_hostport(advertise)
    if _is_wildcard(adv_host):
        raise ValueError(
            f"SIP listens on the wildcard address {listen_host}: set AFTERBEEP_SIP_ADVERTISE "
            "to the address peers reach this node at"
        )
    try:
        media_ip = str(ipaddress.ip_address(adv_host))
    except ValueError:
        media_ip = str(socket.getaddrinfo(adv_host, None, type=socket.SOCK_DGRAM)[0][4][0])
    listen = f"[{listen_host}]:{port}" if ":" in listen_host else f"{listen_host}:{port}"
    ua = UAConfig(
        advertise=advertise,
        listen_udp=listen,
        listen_tcp=listen,
        user_agent=user_agent,
        retry_after=retry_after,
    )
    media = MediaConfig(
        advertised_ip=media_ip,
        bind_host=listen_host,
        port_min=rtp_port_min,
        port_max=rtp_port_max,
    )
    return ua, media


def _is_wildcard(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


class TelephonyServer:
    """Use as ``async with TelephonyServer(ua_config, media_config, on_call=script):``.

    ``router`` (async, gets the IncomingInvite) wins over ``on_call``; with neither, every
    INVITE is answered 404. ``quick_router`` (sync) is asked before ``router``. The handler
    gets the `SipCall` (unanswered unless the route was `Answer`); whatever it does, the call
    is hung up when it returns or raises.
    """

    def __init__(
        self,
        config: UAConfig,
        media_config: MediaConfig,
        on_call: CallHandler | None = None,
        *,
        router: Router | None = None,
        quick_router: QuickRouter | None = None,
        limits: ServerLimits = ServerLimits(),
        call_settings: CallSettings = CallSettings(),
    ) -> None:
        self.config = config
        self.limits = limits
        self._call_settings = call_settings
        self._on_call = on_call
        self._router = router
        self._quick_router = quick_router
        self._ua = UserAgent(config, self._on_invite)
        self._ua.accepting_calls = self.accepting_calls
        self._media = MediaEngine(media_config)
        self._calls: dict[asyncio.Task[None], SipCall] = {}
        self._all_done = asyncio.Event()
        self._all_done.set()
        self.state = ServerState.NEW
        self.stats = ServerStats()
        self._stopped: asyncio.Future[None] | None = None
        self.admission = AdmissionGate(limits.admission, time.monotonic)
        self.loop_cpu: Callable[[], float] = time.thread_time  # read on the loop's thread
        self.cpu: Callable[[], CpuReading | None] = CpuReader()  # ... so is this (/proc)
        self._media.on_prompt_late = self._prompt_late
        self._lag_watch: asyncio.Task[None] | None = None
        self._refusals_unlogged = 0
        self._refusal_logged_at = float("-inf")

    # --- CallEndpoint (used by dial) -------------------------------------------------------

    @property
    def ua(self) -> UserAgent:
        return self._ua

    @property
    def media(self) -> MediaEngine:
        return self._media

    @property
    def call_settings(self) -> CallSettings:
        return self._call_settings

    # --- introspection ----------------------------------------------------------------------

    @property
    def udp_port(self) -> int | None:
        return self._ua.udp_port

    @property
    def tcp_port(self) -> int | None:
        return self._ua.tcp_port

    @property
    def active_calls(self) -> int:
        return len(self._calls)

    @property
    def calls(self) -> list[SipCall]:
        return list(self._calls.values())

    async def idle(self) -> None:
        """Until no call is in progress."""
        await self._all_done.wait()

    def listening(self) -> str:
        """Where SIP listens, for the operator: ``udp+tcp 127.0.0.1:5060, advertised as ...``."""
        listen = self.config.listen_udp or self.config.listen_tcp or ""
        host, _ = parse_hostport(listen)
        host = f"[{host}]" if ":" in host else host
        parts = [f"udp {host}:{self.udp_port}"] if self.udp_port else []
        parts += [f"tcp {host}:{self.tcp_port}"] if self.tcp_port else []
        return f"{', '.join(parts)}, advertised as {self._ua.advertised_host}"

    # --- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> TelephonyServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        if self.state is not ServerState.NEW:
            raise RuntimeError(f"telephony server is {self.state.value}")
        try:
            await self._media.prebind()
            await self._ua.start()
        except BaseException:
            await self._media.close()
            self.state = ServerState.CLOSED
            raise
        self.state = ServerState.RUNNING
        self._lag_watch = asyncio.get_running_loop().create_task(
            self._watch_loop_lag(), name="loop-lag"
        )

    def accepting_calls(self) -> bool:
        """What an OPTIONS probe (a proxy in front of this node) is told: False while draining,
        full, or at its learned call limit. Not for what is judged at each INVITE, a burst of
        answers or the health backstop (loop lag, late prompts): a proxy sends an INVITE refused
        with 503 to another node anyway, while a probe's 503 takes the node out of its set until
        the next probe (seconds), and when every node's loop lags at once, as on one shared
        machine, the proxy then refuses every call itself."""
        if self.state is not ServerState.RUNNING or len(self._calls) >= self.limits.max_calls:
            return False
        refusal = self.admission.refusal(len(self._calls))
        return refusal not in (Refusal.CAPACITY, Refusal.MAX_CALLS, Refusal.DRAINING)

    def drain(self) -> None:
        """The first phase of `stop()` alone: new INVITEs get 503; calls in progress go on, and
        outbound calls can still be placed (the second call of a drop in progress)."""
        if self.state is ServerState.RUNNING:
            self.state = ServerState.DRAINING

    async def stop(
        self, drain_timeout: float | None = None, hangup_timeout: float | None = None
    ) -> None:
        """Stop in phases (see the module docstring); returns once everything is closed."""
        if self._stopped is not None:
            await asyncio.shield(self._stopped)
            return
        self._stopped = asyncio.get_running_loop().create_future()
        drain = self.limits.drain_timeout if drain_timeout is None else drain_timeout
        grace = self.limits.hangup_timeout if hangup_timeout is None else hangup_timeout
        try:
            self.state = ServerState.DRAINING
            await self._wait_calls(drain)
            if self._calls:
                log.info("shutdown: ending %d calls still in progress", len(self._calls))
                for call in self._calls.values():
                    self.stats.ended_by_shutdown += 1
                    call.end("shutdown")
                await self._wait_calls(grace)
            if self._calls:
                tasks = list(self._calls)
                self.stats.cancelled_by_shutdown += len(tasks)
                for task in tasks:
                    task.cancel()
                # a cancelled script still says BYE in its finally; a dead peer gets no longer
                _, stuck = await asyncio.wait(tasks, timeout=grace)
                for task in stuck:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            await self._ua.close()
            await self._media.close()
        finally:
            if self._lag_watch is not None:
                self._lag_watch.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._lag_watch
                self._lag_watch = None
            self.state = ServerState.CLOSED
            self._stopped.set_result(None)

    async def _wait_calls(self, timeout: float) -> None:
        if not self._calls or timeout <= 0:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._all_done.wait()

    # --- inbound ----------------------------------------------------------------------------

    def _on_invite(self, invite: IncomingInvite) -> None:
        retry = (("Retry-After", str(self.limits.retry_after)),)
        if self.state is not ServerState.RUNNING:
            self.stats.rejected_draining += 1
            CALLS_REFUSED.labels(Refusal.DRAINING.value).inc()
            invite.reject(503, "Service Unavailable", retry)
            return
        refusal = Refusal.MAX_CALLS if len(self._calls) >= self.limits.max_calls else None
        if refusal is None:
            refusal = self.admission.refusal(len(self._calls))
        if refusal is not None:
            if refusal is Refusal.MAX_CALLS:
                self.stats.rejected_overload += 1
            else:
                self.stats.rejected_unhealthy += 1
            CALLS_REFUSED.labels(refusal.value).inc()
            self._log_refusal(refusal, invite)
            invite.reject(503, "Service Unavailable", retry)
            return
        self.stats.accepted += 1
        self.admission.admitted()
        call = SipCall(self._media, self._call_settings, invite=invite)
        route = self._quick_route(invite)
        if isinstance(route, Answer):
            with contextlib.suppress(CallEnded):
                call.answer_now()  # else the task answers (no pre-bound pair, or gone)
        task = asyncio.get_running_loop().create_task(self._run(call, route), name=call.call_id)
        self._calls[task] = call
        self._all_done.clear()
        task.add_done_callback(self._call_done)

    def _log_refusal(self, refusal: Refusal, invite: IncomingInvite) -> None:
        self._refusals_unlogged += 1
        now = time.monotonic()
        if now - self._refusal_logged_at < REFUSAL_LOG_INTERVAL:
            return
        gate = self.admission
        lag, late = gate.level(Refusal.LOOP_LAG), gate.level(Refusal.PROMPT_LATE)
        log.warning(
            "overload (%s): %d calls in progress, %d INVITE(s) refused, the last to %s "
            "(loop busy %s, call limit %s, median loop lag %s, prompt lateness %s, "
            "process CPU share %s, loop waiting for a CPU %s)",
            refusal.value,
            len(self._calls),
            self._refusals_unlogged,
            mask(invite.request_user),
            "n/a" if gate.loop_share is None else f"{gate.loop_share:.0%}",
            "n/a" if gate.limit is None else gate.limit,
            "n/a" if lag is None else f"{lag * 1000:.0f} ms",
            "n/a" if late is None else f"{late * 1000:.0f} ms",
            "n/a" if gate.cpu_share is None else f"{gate.cpu_share:.0%}",
            "n/a" if gate.wait is None else f"{gate.wait:.0%}",
        )
        self._refusals_unlogged = 0
        self._refusal_logged_at = now

    def _prompt_late(self, seconds: float) -> None:
        PROMPT_LATE.observe(seconds)
        self.admission.prompt_late(seconds)

    async def _watch_loop_lag(self) -> None:
        """Sample how late the loop runs a timer (the lag every callback of it suffers), how
        busy its thread is (this task runs on it: `time.thread_time` is the loop's CPU), the
        process's CPU (all threads) against what it could have, and the loop thread's wait for
        a CPU (`afterbeep.telephony.cpu`)."""
        loop = asyncio.get_running_loop()
        while True:
            expected = loop.time() + LAG_INTERVAL
            await asyncio.sleep(LAG_INTERVAL)
            lag = max(0.0, loop.time() - expected)
            LOOP_LAG.observe(lag)
            gate = self.admission
            gate.loop_lag(lag)
            cpu = self.cpu()
            if cpu is not None and cpu.loop_wait is not None:
                gate.cpu_wait(cpu.loop_wait)
            gate.loop_busy(
                self.loop_cpu(),
                len(self._calls),
                None if cpu is None else cpu.process,
                None if cpu is None else cpu.available,
            )
            if gate.loop_share is not None:
                LOOP_BUSY.set(gate.loop_share)
            if gate.cpu_share is not None:
                PROCESS_CPU_SHARE.set(gate.cpu_share)
            if gate.wait is not None:
                LOOP_CPU_WAIT.set(gate.wait)
            limit = gate.limit
            ADMISSION_CALL_LIMIT.set(
                self.limits.max_calls if limit is None else min(limit, self.limits.max_calls)
            )

    def _call_done(self, task: asyncio.Task[None]) -> None:
        self._calls.pop(task, None)
        if not self._calls:
            self._all_done.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("call task %s failed", task.get_name(), exc_info=task.exception())

    def _quick_route(self, invite: IncomingInvite) -> Route | None:
        if self._quick_router is None:
            return None
        try:
            route = self._quick_router(invite)
        except Exception:
            log.exception("quick router failed; asking the router")
            return None
        if route is not None:
            SIP_INVITE_ROUTED.labels("quick").observe(time.monotonic() - invite.received_at)
        return route

    async def _route(self, invite: IncomingInvite) -> Route:
        if self._router is not None:
            route = await self._router(invite)
        elif self._on_call is not None:
            route = self._on_call
        else:
            route = 404
        SIP_INVITE_ROUTED.labels("async").observe(time.monotonic() - invite.received_at)
        return route

    async def _run(self, call: SipCall, target: Route | None = None) -> None:
        invite = call.invite
        assert invite is not None
        log.info("call %s from %s to %s", call.call_id, mask(call.caller), mask(call.callee))
        try:
            if target is None:
                try:
                    async with asyncio.timeout(self.limits.route_timeout):
                        target = await self._route(invite)
                except TimeoutError:
                    log.error("call %s: routing took too long", call.call_id)
                    target = 503
            if isinstance(target, int):
                code = target if 300 <= target <= 699 else 500
                invite.reject(code)
                call.end(f"rejected {code}")
                return
            if isinstance(target, Answer):
                await call.answer()
                target = target.handler
            await target(call)
        except CallEnded:
            pass
        except Exception:
            self.stats.handler_errors += 1
            log.exception("call %s: handler failed", call.call_id)
            if invite.answerable:
                invite.reject(500)
        finally:
            await call.hangup()
            log.info("call %s ended (%s)", call.call_id, call.end_reason)

    # --- outbound ---------------------------------------------------------------------------

    async def dial(
        self,
        to_uri: str,
        from_uri: str,
        *,
        credentials: Credentials | None = None,
        outbound_proxy: str | None = None,
        timeout: float = 60.0,
        headers: Iterable[tuple[str, str]] = (),
    ) -> OutboundCall:
        """`afterbeep.telephony.call.dial` from this server; DialFailed(503) unless running
        or draining (calls of work already in progress)."""
        if self.state not in (ServerState.RUNNING, ServerState.DRAINING):
            raise DialFailed(503, f"telephony server is {self.state.value}")
        return await dial(
            self,
            to_uri,
            from_uri,
            credentials=credentials,
            outbound_proxy=outbound_proxy,
            timeout=timeout,
            headers=headers,
        )
