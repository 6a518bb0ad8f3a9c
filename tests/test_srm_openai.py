"""The openai planner on the wire (httpx.MockTransport with real chat-completions shapes)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.test_jobs_support import (
    FakeEngine,
    config,
    db_rows,
    job_records,
    pos,
    snap,
    started_pool,
)

KEY = "sk-test-5f3c1e0b9a7d4c2e"
KEY_ENV = "RISKTERM_TEST_OPENAI_KEY"


def call(cid: str, name: str, args: str | dict[str, Any]) -> dict[str, Any]:
    return {"id": cid, "type": "function",
            "function": {"name": name, "arguments": args if isinstance(args, str)
                         else json.dumps(args)}}


def completion(*calls: dict[str, Any], content: str | None = None) -> httpx.Response:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = list(calls)
    return httpx.Response(200, json={
        "id": "chatcmpl-9xYz", "object": "chat.completion", "created": 1770130800,
        "model": "gpt-4o-mini-2024-07-18", "system_fingerprint": "fp_0ba0d124f1",
        "choices": [{"index": 0, "message": message, "logprobs": None,
                     "finish_reason": "tool_calls" if calls else "stop"}],
        "usage": {"prompt_tokens": 812, "completion_tokens": 41, "total_tokens": 853},
    })


def error(status: int, message: str, type_: str, **headers: str) -> httpx.Response:
    return httpx.Response(status, headers=headers, json={
        "error": {"message": message, "type": type_, "param": None, "code": None}})


RATE_LIMITED = error(429, "Rate limit reached for gpt-4o-mini in organization org-x on "
                          "requests per min (RPM): Limit 3, Used 3.", "requests",
                     **{"retry-after": "0"})
SERVER_ERROR = error(500, "The server had an error while processing your request. Sorry about "
                          "that!", "server_error")


class Script:
    """Answers each request with the next scripted response (or raises it)."""

    def __init__(self, *responses: httpx.Response | Exception) -> None:
        self.responses = list(responses)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        item = self.responses.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests]


ENGINE_SNAP = snap("A1", positions=[pos("MNQ", 2, 20000.0, 20010.0)],
                   limits={"daily_realized_loss": {"limit": -500.0}})


async def run_job(tmp_path: Path, script: Script, **cfg: Any) -> tuple[Path, str, FakeEngine]:
    db = tmp_path / "o.db"
    engine = FakeEngine({"A1": ENGINE_SNAP})
    base = {"planner": "openai", "base_url": "http://llm.test/v1", "model": "gpt-4o-mini",
            "api_key_env": KEY_ENV, "max_iterations": 5}
    pool = await started_pool(db, config(**{**base, **cfg}), engine,
                              http_transport=httpx.MockTransport(script), backoff_base=0.01)
    job_id, _ = await pool.enqueue("A1", instructions="protect the MNQ long")
    await pool.drain()
    await pool.stop()
    return db, job_id, engine


def job_row(db: Path, *cols: str) -> dict[str, Any]:
    (row,) = db_rows(db, f"SELECT {', '.join(cols)} FROM jobs")
    return dict(zip(cols, row, strict=True))


async def test_tool_calling_round_trip_on_the_wire(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    script = Script(
        completion(call("call_a1", "get_positions", "{}"),
                   call("call_a2", "get_pnl_and_limits", "{}")),
        completion(call("call_b1", "set_stop_loss", {"symbol": "MNQ", "price": 19975.25,
                                                     "reason": "no stop on a 2-lot",
                                                     "confidence": 0.7}),
                   call("call_b2", "finish", {"summary": "Added a stop for MNQ."})),
    )
    db, job_id, engine = await run_job(tmp_path, script)
    assert job_records(db, job_id)[-1]["status"] == "completed"
    first = script.requests[0]
    assert len(script.requests) == 2
    assert (first.method, str(first.url)) == ("POST", "http://llm.test/v1/chat/completions")
    assert first.headers["authorization"] == f"Bearer {KEY}"
    assert first.headers["content-type"] == "application/json"
    body = script.bodies()[0]
    assert body["model"] == "gpt-4o-mini" and body["tool_choice"] == "auto"
    names = [t["function"]["name"] for t in body["tools"]]
    assert names == ["get_positions", "get_working_orders", "get_pnl_and_limits",
                     "get_recent_violations", "get_price_history", "close_position",
                     "reduce_position", "set_stop_loss", "set_take_profit", "cancel_orders",
                     "finish"]
    stop_tool = body["tools"][names.index("set_stop_loss")]
    assert stop_tool["type"] == "function"
    assert stop_tool["function"]["parameters"]["required"] == ["symbol", "price", "reason"]
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert "A1" in body["messages"][1]["content"]
    assert "protect the MNQ long" in body["messages"][1]["content"]
    msgs = script.bodies()[1]["messages"]
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "tool", "tool"]
    assert [c["id"] for c in msgs[2]["tool_calls"]] == ["call_a1", "call_a2"]
    assert msgs[3]["tool_call_id"] == "call_a1"
    assert json.loads(msgs[3]["content"])[0]["symbol"] == "MNQ"
    assert json.loads(msgs[4]["content"])["limits"] == {"daily_realized_loss": {"limit": -500.0}}
    row = job_row(db, "model_used", "iteration_count", "actions_log", "graph_state")
    assert (row["model_used"], row["iteration_count"]) == ("gpt-4o-mini", 2)
    (entry,) = json.loads(row["actions_log"])
    assert entry == {"step": 2, "action": "set_stop_loss",
                     "arguments": {"symbol": "MNQ", "price": 19975.25},
                     "reason": "no stop on a 2-lot", "confidence": 0.7, "result": "recommended"}
    assert json.loads(row["graph_state"])["summary"] == "Added a stop for MNQ."
    assert engine.calls == []
    for name in ("o.db", "o.db-wal"):  # the key is never stored
        path = tmp_path / name
        assert not path.exists() or KEY.encode() not in path.read_bytes()


async def test_no_key_means_no_authorization_header(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    script = Script(completion(call("c1", "finish", {"summary": "All fine."})))
    db, job_id, _ = await run_job(tmp_path, script, base_url="http://localhost:11434/v1/")
    assert "authorization" not in script.requests[0].headers
    assert str(script.requests[0].url) == "http://localhost:11434/v1/chat/completions"
    assert job_records(db, job_id)[-1]["status"] == "completed"


async def test_malformed_arguments_and_text_answers_are_never_acted_on(tmp_path: Path) -> None:
    script = Script(
        completion(call("c1", "reduce_position", '{"symbol": "MNQ", "qty": 1'),
                   call("c2", "set_stop_loss", {"symbol": "MNQ", "price": "low",
                                                "reason": "x"}),
                   call("c3", "buy_more", {"symbol": "MNQ"})),
        completion(content="You should probably close the MNQ position."),
        completion(call("c4", "close_position", {"symbol": "MNQ", "reason": "too risky"}),
                   call("c5", "finish", {"summary": "Closed MNQ."})),
    )
    db, job_id, engine = await run_job(tmp_path, script, execute=True)
    bodies = script.bodies()
    tool_msgs = [m["content"] for m in bodies[1]["messages"] if m["role"] == "tool"]
    assert tool_msgs[0].startswith("error: arguments are not valid JSON")
    assert tool_msgs[1].startswith("error: argument 'price' must be a number, got \"low\"")
    assert tool_msgs[2].startswith("error: unknown tool 'buy_more'")
    last = bodies[2]["messages"][-1]
    assert last["role"] == "user" and "no tool call" in last["content"]
    assert [c["action"] for c in engine.calls] == ["close_position"]
    row = job_row(db, "iteration_count", "actions_log", "actions_taken")
    assert row["iteration_count"] == 3 and row["actions_taken"] == 1
    assert [e["action"] for e in json.loads(row["actions_log"])] == ["close_position"]
    assert job_records(db, job_id)[-1]["status"] == "completed"


async def test_out_of_iterations(tmp_path: Path) -> None:
    looping = Script(*[completion(call(f"c{i}", "get_positions", "{}")) for i in range(2)])
    db, job_id, _ = await run_job(tmp_path / "a", looping, max_iterations=2)
    rec = job_records(db, job_id)[-1]
    assert rec["status"] == "failed" and rec["attempt"] == 1
    assert "used all 2 iterations without proposing" in rec["error"]
    partial = Script(completion(call("c1", "close_position", {"symbol": "MNQ", "reason": "r"})),
                     completion(content="thinking..."))
    db, job_id, _ = await run_job(tmp_path / "b", partial, max_iterations=2)
    assert job_records(db, job_id)[-1]["status"] == "completed"
    assert job_row(db, "actions_summary")["actions_summary"] == "1 recommended (close_position MNQ)"


async def test_rate_limit_is_retried_with_backoff(tmp_path: Path) -> None:
    script = Script(RATE_LIMITED, completion(call("c1", "finish", {"summary": "ok"})))
    db, job_id, _ = await run_job(tmp_path, script)
    assert [(r["status"], r["attempt"]) for r in job_records(db, job_id)] == [
        ("queued", 1), ("running", 1), ("queued", 2), ("running", 2), ("completed", 2)]
    retry = db_rows(db, "SELECT detail FROM job_events WHERE type = 'retry'")[0][0]
    assert "HTTP 429: Rate limit reached" in retry


async def test_server_errors_fail_after_three_attempts(tmp_path: Path) -> None:
    script = Script(SERVER_ERROR, SERVER_ERROR, SERVER_ERROR)
    db, job_id, _ = await run_job(tmp_path, script)
    rec = job_records(db, job_id)[-1]
    assert (rec["status"], rec["attempt"]) == ("failed", 3)
    assert rec["error"] == ("gave up after 3 attempts: the planner endpoint answered HTTP 500: "
                            "The server had an error while processing your request. Sorry "
                            "about that!")
    assert len(script.requests) == 3


@pytest.mark.parametrize(("exc", "text"), [
    (httpx.ConnectError("[Errno 111] Connection refused"), "cannot reach the planner endpoint"),
    (httpx.ReadTimeout("timed out"), "timed out (ReadTimeout)"),
])
async def test_connection_errors_and_timeouts_are_transient(tmp_path: Path, exc: Exception,
                                                            text: str) -> None:
    script = Script(exc, exc, completion(call("c1", "finish", {"summary": "ok"})))
    db, job_id, _ = await run_job(tmp_path, script)
    recs = job_records(db, job_id)
    assert (recs[-1]["status"], recs[-1]["attempt"]) == ("completed", 3)
    retries = [d for (d,) in db_rows(db, "SELECT detail FROM job_events WHERE type = 'retry'")]
    assert len(retries) == 2 and text in retries[0]


async def test_client_errors_fail_at_once_without_leaking_the_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    script = Script(error(401, f"Incorrect API key provided: {KEY}. You can find your API key "
                               "at https://platform.openai.com/account/api-keys.",
                          "invalid_request_error"))
    db, job_id, _ = await run_job(tmp_path, script)
    rec = job_records(db, job_id)[-1]
    assert (rec["status"], rec["attempt"]) == ("failed", 1)
    assert rec["error"].startswith("the planner endpoint answered HTTP 401: Incorrect API key")
    assert KEY not in rec["error"] and "[redacted]" in rec["error"]
    for name in ("o.db", "o.db-wal"):
        path = tmp_path / name
        assert not path.exists() or KEY.encode() not in path.read_bytes()


async def test_malformed_response_body_is_transient(tmp_path: Path) -> None:
    garbage = httpx.Response(200, text="<html>bad gateway</html>")
    script = Script(garbage, completion(call("c1", "finish", {"summary": "ok"})))
    db, job_id, _ = await run_job(tmp_path, script)
    assert job_records(db, job_id)[-1]["attempt"] == 2


async def test_deeply_nested_answers_are_malformed_not_internal_errors(tmp_path: Path) -> None:
    """JSON nested deeper than the parser's recursion limit: tool arguments are an error the
    model is told about, a whole answer is a malformed (transient) answer."""
    deep_args = '{"symbol": ' + "[" * 100_000 + "]" * 100_000 + "}"
    script = Script(completion(call("c1", "close_position", deep_args)),
                    completion(call("c2", "finish", {"summary": "nothing to do"})))
    db, job_id, engine = await run_job(tmp_path / "a", script, execute=True)
    tool_msgs = [m["content"] for m in script.bodies()[1]["messages"] if m["role"] == "tool"]
    assert len(tool_msgs) == 1 and tool_msgs[0].startswith("error: arguments are nested too deeply")
    assert engine.calls == []
    assert job_records(db, job_id)[-1]["status"] == "completed"

    deep_body = httpx.Response(200, content=b'{"choices": ' + b"[" * 100_000 + b"]" * 100_000
                               + b"}", headers={"content-type": "application/json"})
    script = Script(deep_body, completion(call("c1", "finish", {"summary": "ok"})))
    db, job_id, _ = await run_job(tmp_path / "b", script)
    records = job_records(db, job_id)
    assert records[-1]["status"] == "completed" and records[-1]["attempt"] == 2
    retry = db_rows(db, "SELECT detail FROM job_events WHERE type = 'retry'")[0][0]
    assert "nested too deeply" in retry
