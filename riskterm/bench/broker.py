"""The live-broker path, end to end on loopback: the shipped test gateway
(riskterm.testing.gateway) and the real engine host (`--source projectx`, EngineHost with a
temporary database) in one process.

Breach latency: a breach is a gateway state change whose pushes break a rule; a sample is the
time from just before the gateway makes the change (its pushes are queued for the hub within
that call) to the arrival, at the gateway's REST server, of the enforcement request riskterm
sends back (TestGateway.on_request). Two kinds alternate, over the accounts in turn: a limit
order of 11 contracts (max_order_size 10: Order/cancel of that order) and a market order that
takes a position of 10 MNQ to 11 (max_contracts_per_instrument 10: its fill, order, position
and account pushes; Position/partialCloseContract of 1). One breach at a time: the next one is
made once riskterm has taken the outcome of the last (the order cancelled, the position back
at 10 and confirmed), so a sample is the path's latency, not a queue; the first WARMUP are
not samples.

Ingest: the gateway pushes N GatewayQuote messages, each one a change, round-robin over the
four contracts riskterm subscribes, pre-encoded and batched FRAME records per WebSocket frame
(as SignalR's server sends what is queued under load) so that the gateway is not the
bottleneck; the rate is N over the time until the engine has taken all N (engine.n_events).
Every account holds 10 MNQ and 2 MES with working stops, so each quote of those is judged by
the quote rules for every account. Baseline, in the same run: the same frames sent to a bare
`websockets` client that splits the records and orjson-decodes each one. Best of RUNS,
baseline and engine alternating.

Rules: the whole catalog (all 20 rules) enabled, with limits that only the two breaches above
cross (`other_violations` counts any other, 0 when the run is as designed), a session and a
daily reset placed around the current time so that the run never meets a session end. The
Gateway's rate limit (200 calls / 60 s) is lifted on both sides: 1,000 enforcements in a few
seconds would otherwise measure the limiter's waiting, not riskterm.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from websockets.asyncio.client import connect

from riskterm.bench.stats import percentile
from riskterm.brokers.projectx.signalr import HANDSHAKE, RS, ws_url
from riskterm.config import RulesConfig, load_rules_text
from riskterm.host import EngineHost, RunOptions
from riskterm.rules.params import RULE_PARAMS
from riskterm.testing.gateway import CONTRACTS, TestGateway
from riskterm.testing.gateway.state import START_QUOTES, hub_ts

BREACHES = 1_000
QUOTES = 100_000
ACCOUNTS = 10
WARMUP = 20
FRAME = 50  # quote records per WebSocket frame
RUNS = 2
TIMEOUT = 10.0  # seconds a breach or an ingest run may take before the benchmark fails

MNQ = "CON.F.US.MNQ.H26"
MES = "CON.F.US.MES.H26"
LIMIT = 10  # max_order_size and the MNQ position limit

# every rule of the catalog, limits out of reach but for max_order_size and MNQ's limit
RULES: dict[str, Any] = {
    "max_contracts": {"limit": 1000},
    "max_contracts_per_instrument": {"limits": {"MNQ": LIMIT}, "default_limit": 100},
    "max_order_size": {"max_qty": LIMIT},
    "order_rate_limit": {"max_orders": 100_000, "per_seconds": 1},
    "daily_realized_loss": {"limit": -40_000},
    "daily_realized_profit": {"target": 40_000},
    "daily_total_loss": {"limit": -40_000},
    "daily_unrealized_loss": {"limit": -40_000},
    "max_position_loss": {"limit": -40_000},
    "max_unrealized_profit": {"target": 40_000},
    "trailing_drawdown": {"amount": 40_000},
    "max_position_value_pct": {"max_pct": 100.0},
    "max_total_exposure": {"limit": 100_000_000},
    "trade_frequency_limit": {"per_minute": 100_000},
    "cooldown_after_loss": {"tiers": [{"loss": -40_000, "lockout": "15m"}]},
    "consecutive_losses": {"max_losses": 100_000},
    "no_stop_loss_grace": {"grace_seconds": 30},
    "session_block_outside": {"flatten_at_close": True},
    "symbol_blocks": {"symbols": ["BTC*"]},
    "auth_loss_guard": {},
}


def bench_config(now: datetime | None = None) -> RulesConfig:
    """The full catalog (RULES) in UTC, with the session open from an hour ago for six
    hours and the daily reset twelve hours away, every day of the week."""
    missing = set(RULE_PARAMS) - set(RULES)
    if missing:  # a rule added to the catalog must be added here too
        raise LookupError(f"the broker benchmark enables no parameters for {sorted(missing)}")
    now = now or datetime.now(UTC)
    hhmm = lambda d: (now + timedelta(hours=d)).strftime("%H:%M")  # noqa: E731
    data = {
        "timezone": "UTC", "daily_reset": hhmm(12),
        "session": {"start": hhmm(-1), "end": hhmm(5),
                    "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]},
        "instruments": {"MNQ": {"tick_size": 0.25, "tick_value": 0.5},
                        "MES": {"tick_size": 0.25, "tick_value": 1.25},
                        "ES": {"tick_size": 0.25, "tick_value": 12.5},
                        "CL": {"tick_size": 0.01, "tick_value": 10.0}},
        "rules": RULES,
    }
    return load_rules_text(json.dumps(data), "(broker benchmark rules)")




async def _until(cond: Callable[[], object], what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not happen within {timeout:g} s")
        await asyncio.sleep(0.002)


def quote_frames(n: int, run: int) -> list[str]:
    """n GatewayQuote records, FRAME to a frame; each a change for its contract (the price
    steps by a tick, and every run starts a point away from where the last one ended)."""
    cids = [c["id"] for c in CONTRACTS]
    stamp = hub_ts(time.time())
    records = []
    for i in range(n):
        cid = cids[i % len(cids)]
        tick = 0.01 if cid.endswith("CLE.F26") else 0.25
        last = START_QUOTES[cid] + run + tick * ((i // len(cids)) % 2)
        msg = {"type": 1, "target": "GatewayQuote", "arguments": [cid, {
            "symbol": cid[4:-4], "lastPrice": last, "bestBid": round(last - tick, 2),
            "bestAsk": last, "timestamp": stamp}]}
        records.append(orjson.dumps(msg).decode() + RS)
    return ["".join(records[i:i + FRAME]) for i in range(0, n, FRAME)]


class _Breaches:
    """Matches the enforcement requests arriving at the gateway to the breaches waiting."""

    def __init__(self) -> None:
        self.waiting: dict[tuple[str, int], asyncio.Future[float]] = {}
        self.others: list[str] = []  # enforcement requests no breach was waiting for

    def on_request(self, rec: Any) -> None:
        at = time.perf_counter()
        body = rec.body if isinstance(rec.body, dict) else {}
        if rec.path == "Order/cancel":
            key = (rec.path, body.get("orderId"))
        elif rec.path in ("Position/partialCloseContract", "Position/closeContract"):
            key = (rec.path, body.get("accountId"))
        else:
            return
        fut = self.waiting.pop(key, None)  # type: ignore[arg-type]
        if fut is None or fut.done():
            self.others.append(rec.path)
        else:
            fut.set_result(at)

    def expect(self, key: tuple[str, int]) -> asyncio.Future[float]:
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.waiting[key] = fut
        return fut


def _outcome_taken(engine: Any, acct: Any, oid: int | None) -> bool:
    """The engine has seen the breach's outcome: the order cancelled (`oid`) or the position
    back at the limit, and the broker has confirmed the enforcement."""
    if engine.unconfirmed:
        return False
    if oid is not None:
        return str(oid) not in acct.orders
    pos = acct.positions.get("MNQH26")
    return pos is not None and pos.qty == LIMIT


async def _breach_run(gw: TestGateway, engine: Any, aids: list[int],
                      names: list[str], n: int) -> dict[str, Any]:
    matcher = _Breaches()
    gw.on_request = matcher.on_request
    samples: dict[str, list[float]] = {"cancel": [], "reduce": []}
    try:
        for i in range(WARMUP + n):
            aid, name = aids[i % len(aids)], names[i % len(aids)]
            acct = engine.accounts[name]
            if i % 2 == 0:  # an order over max_order_size, resting far below the market
                kind = "cancel"
                t0 = time.perf_counter()
                oid: int | None = gw.state.place(aid, MNQ, 1, 0, LIMIT + 1,
                                                 limit=START_QUOTES[MNQ] - 1000)
                fut = matcher.expect(("Order/cancel", oid))  # type: ignore[arg-type]
            else:  # one more contract than max_contracts_per_instrument allows
                kind, oid = "reduce", None
                fut = matcher.expect(("Position/partialCloseContract", aid))
                t0 = time.perf_counter()
                gw.state.place(aid, MNQ, 2, 0, 1)
            try:
                at = await asyncio.wait_for(fut, TIMEOUT)
            except TimeoutError:
                raise RuntimeError(f"breach {i} ({kind}): no enforcement request reached the "
                                   f"gateway within {TIMEOUT:g} s") from None
            if i >= WARMUP:
                samples[kind].append((at - t0) * 1000)
            # one breach at a time: the next one when riskterm has taken this one's outcome
            await _until(functools.partial(_outcome_taken, engine, acct, oid),
                         f"riskterm taking the outcome of breach {i} ({kind})")
    finally:
        gw.on_request = None
    ms = samples["cancel"] + samples["reduce"]
    return {"breaches": len(ms), "p50_ms": round(percentile(ms, 0.5), 2),
            "p99_ms": round(percentile(ms, 0.99), 2), "max_ms": round(max(ms, default=0.0), 2),
            **{f"{kind}_p50_ms": round(statistics.median(v), 2) if v else 0.0
               for kind, v in samples.items()},
            "unmatched_requests": len(matcher.others)}


def _market_conns(gw: TestGateway) -> list[Any]:
    return [c for c in gw.conns if c.hub == "market"]


async def _engine_ingest(gw: TestGateway, host: EngineHost, frames: list[str], n: int) -> float:
    (conn,) = _market_conns(gw)
    engine = host.engine
    target = engine.n_events + n
    t0 = time.perf_counter()
    for frame in frames:
        conn.send(frame)
    seen, stalled = engine.n_events, time.monotonic()
    while engine.n_events < target:
        await asyncio.sleep(0.002)
        if engine.n_events != seen:
            seen, stalled = engine.n_events, time.monotonic()
        elif time.monotonic() - stalled > TIMEOUT:
            raise RuntimeError(f"the engine took {n - (target - seen)} of {n} quotes and then "
                               f"none for {TIMEOUT:g} s")
    return n / (time.perf_counter() - t0)


async def _baseline_ingest(gw: TestGateway, token: str, frames: list[str], n: int) -> float:
    """The same frames to a bare websockets client that only splits and decodes them."""
    before = set(map(id, gw.conns))
    url = ws_url(gw.env()["PROJECTX_MARKET_HUB"], access_token=token)
    async with connect(url, compression=None, max_size=1 << 22) as ws:
        await ws.send(HANDSHAKE)
        await ws.recv()  # the handshake answer
        await _until(lambda: any(id(c) not in before for c in _market_conns(gw)),
                     "the baseline client's connection")
        (conn,) = [c for c in _market_conns(gw) if id(c) not in before]
        loads = orjson.loads
        got = 0
        t0 = time.perf_counter()
        for frame in frames:
            conn.send(frame)
        buffer = ""
        while got < n:
            frame = await asyncio.wait_for(ws.recv(), TIMEOUT)
            assert isinstance(frame, str)
            *records, buffer = (buffer + frame).split(RS)
            for record in records:
                if loads(record).get("type") == 1:
                    got += 1
        return n / (time.perf_counter() - t0)


def _setup_accounts(gw: TestGateway) -> list[int]:
    """ACCOUNTS accounts, each holding 10 MNQ and 2 MES with a working stop on each."""
    s = gw.state
    aids = []
    for k in range(ACCOUNTS):
        aid = 9100 + k
        s.add_account(aid, f"BENCH-{k + 1:02d}", 150_000.0)
        for cid, qty in ((MNQ, LIMIT), (MES, 2)):
            s.place(aid, cid, 2, 0, qty)
            s.place(aid, cid, 4, 1, qty, stop=START_QUOTES[cid] - 500)
        aids.append(aid)
    return aids


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class _Tally:
    """A record sink: violations by rule and enforcement statuses."""

    def __init__(self) -> None:
        self.violations: dict[str, int] = {}
        self.failed = 0

    def __call__(self, batch: list[Any]) -> None:
        for rec, _body in batch:
            if rec["kind"] == "violation":
                self.violations[rec["rule"]] = self.violations.get(rec["rule"], 0) + 1
            elif rec["kind"] == "enforcement" and rec["status"] == "failed":
                self.failed += 1


async def _run(n_breaches: int, n_quotes: int, db: Path) -> dict[str, Any]:
    gw = await TestGateway().start()
    said: list[str] = []
    tally = _Tally()
    host: EngineHost | None = None
    feeder: asyncio.Task[None] | None = None
    try:
        gw.faults.rate_limit = (10**9, 60.0)
        aids = _setup_accounts(gw)
        with _environment(gw.env()):
            host = EngineHost(RunOptions(source="projectx", db_path=db), bench_config(),
                              sinks=[tally], with_jobs=False, diagnostics=said.append)
            await host.open()
        broker: Any = host.broker
        broker.rest._limiter.limit = 10**9  # the Gateway's limit is lifted (module docstring)
        feeder = asyncio.create_task(host.run_source())
        engine = host.engine
        names = [f"BENCH-{k + 1:02d}" for k in range(ACCOUNTS)]

        def ready() -> bool:
            if feeder.done():
                feeder.result()  # the source ended: say why
            subs = gw.subscriptions("market")
            return (broker.connected and len(subs) >= len(CONTRACTS)
                    and all(n in engine.accounts and engine.accounts[n].positions.get("MNQH26")
                            for n in names))

        await _until(ready, "riskterm connecting to the gateway and taking its accounts")
        token = await broker.rest.ensure_token()
        rate = baseline = 0.0
        for run in range(RUNS):
            frames = quote_frames(n_quotes, run)
            baseline = max(baseline, await _baseline_ingest(gw, token, frames, n_quotes))
            rate = max(rate, await _engine_ingest(gw, host, frames, n_quotes))
        breaches = await _breach_run(gw, engine, aids, names, n_breaches)
        if feeder.done():
            feeder.result()
        await host.recorder.flush()
        expected = ("max_order_size", "max_contracts_per_instrument")
        return {**breaches, "quotes": n_quotes, "quotes_per_s": round(rate),
                "baseline_quotes_per_s": round(baseline), "ratio": round(rate / baseline, 3),
                "other_violations": sum(n for rule, n in tally.violations.items()
                                        if rule not in expected),
                "enforcements_failed": tally.failed}
    except RuntimeError as exc:
        if said:  # what riskterm reported (ProjectX problems, start-up) says why
            raise RuntimeError(f"{exc}; riskterm said: {said[-1]}") from None
        raise
    finally:
        if host is not None:
            host.request_stop()
            if feeder is not None:
                feeder.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await feeder
            with contextlib.suppress(Exception):
                await host.finish(wait_for_jobs=False)
            await host.close()
        await gw.stop()


def bench_broker(n_breaches: int = BREACHES, n_quotes: int = QUOTES) -> dict[str, Any]:
    """{breaches, p50_ms, p99_ms, max_ms, quotes, quotes_per_s, baseline_quotes_per_s,
    ratio, ...}."""
    with tempfile.TemporaryDirectory(prefix="riskterm-bench-") as tmp:
        return asyncio.run(_run(n_breaches, n_quotes, Path(tmp) / "broker.db"))
