"""A planner over any OpenAI-compatible chat-completions endpoint (OpenAI, Ollama, vLLM,
llama.cpp server) with tool calling, over httpx.

Each iteration is one POST {base_url}/chat/completions. Connect errors, timeouts, 429 and 5xx
raise TransientError (the pool retries the job with backoff); other 4xx raise PermanentError.
The API key comes from the environment variable named by api_key_env (planners/secret.py) and is
only ever put in the Authorization header: every text the planner hands on (errors, tool calls,
model text) is redacted first, so it never reaches errors, events or graph_state.

The answer is read as a stream and never past MAX_ANSWER_BYTES: a bigger answer fails the job
at once (PermanentError: it is none of the transient failures of CONTRACT §8, and a model that
answered that much is unlikely to answer less on a retry). A large answer is parsed and redacted
in a worker thread, so the event loop (enforcement, the job's timeout) keeps running.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any, TypeVar

import httpx

from riskterm.jobs.errors import PermanentError, TransientError
from riskterm.jobs.planners import ToolCall, Turn
from riskterm.jobs.planners.secret import Redactor, read_key
from riskterm.jobs.tools import openai_tools

MIB = 1024 * 1024
MAX_ANSWER_BYTES = 4 * MIB
MAX_ERROR_BYTES = 64 * 1024  # of an error answer: only its message is kept
PARSE_IN_THREAD = 32 * 1024  # bytes: a larger answer is parsed and redacted off the event loop
ERROR_DETAIL = 300  # characters of an endpoint's error message kept in the job's error

T = TypeVar("T")

SYSTEM_PROMPT = """You are the Smart Risk Manager of a futures trading account. Review the \
account and reduce its risk: read it with the get_* tools, then recommend actions with \
close_position, reduce_position, set_stop_loss, set_take_profit or cancel_orders, and end with \
finish(summary). Only ever reduce exposure; never open or add to a position. Every action needs \
a one-sentence reason and a confidence from 0 to 1. Each action is checked by guardrails \
before anything happens."""


class OpenAIPlanner:
    name = "openai"

    def __init__(self, config: Any, *, transport: Any = None) -> None:
        self.config = config
        self.model_used = str(config.model)
        self.step_delay = 0.0
        self.url = str(config.base_url).rstrip("/") + "/chat/completions"
        self._key = read_key(str(config.api_key_env))  # PermanentError for a key it refuses
        self._redact = Redactor(self._key)
        timeout = min(60.0, float(config.timeout_seconds))
        self._client = httpx.AsyncClient(transport=transport,
                                          timeout=httpx.Timeout(timeout, connect=10.0))
        self.messages: list[dict[str, Any]] = []

    def begin(self, state: dict[str, Any], max_iterations: int) -> None:
        snap = state["snapshot"]
        brief = {k: snap.get(k) for k in ("account", "state", "balance", "equity",
                                          "realized_pnl", "unrealized_pnl")}
        brief["open_positions"] = [p.get("symbol") for p in snap.get("positions") or []
                                   if p.get("qty")]
        user = f"Review account {snap.get('account')}: {json.dumps(brief)}. You have at most " \
               f"{max_iterations} turns."
        if state.get("instructions"):
            user += f"\nInstructions from the trader: {state['instructions']}"
        self.messages = [{"role": "system", "content": SYSTEM_PROMPT},
                         {"role": "user", "content": user}]

    async def next_turn(self, iteration: int) -> Turn:
        try:
            return await self._next_turn(iteration)
        except (TransientError, PermanentError):
            raise
        except Exception as exc:  # never let an unexpected error carry the key out
            raise PermanentError(self._redact(f"internal error in the openai planner: "
                                              f"{type(exc).__name__}: {exc}")) from None

    async def _next_turn(self, iteration: int) -> Turn:
        body = {"model": self.model_used, "messages": self.messages,
                "tools": openai_tools(tuple(self.config.allow)), "tool_choice": "auto",
                "temperature": 0}
        headers = {"Content-Type": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        try:
            async with self._client.stream("POST", self.url, json=body,
                                           headers=headers) as resp:
                if resp.status_code >= 400:
                    data = await _read(resp, MAX_ERROR_BYTES, cut=True)
                    text = await _off_loop_if_large(data, self._http_error, resp.status_code)
                    if resp.status_code == 429 or resp.status_code >= 500:
                        err = TransientError(text)
                        err.retry_after = _retry_after(resp)  # type: ignore[attr-defined]
                        raise err
                    raise PermanentError(text)
                data = await _read(resp, MAX_ANSWER_BYTES, cut=False)
        except httpx.TimeoutException as exc:
            raise TransientError(f"the planner endpoint {self.url} timed out "
                                 f"({type(exc).__name__})") from None
        except (httpx.LocalProtocolError, httpx.UnsupportedProtocol) as exc:
            raise PermanentError(self._redact(f"cannot send a request to the planner endpoint "
                                              f"{self.url}: {type(exc).__name__}: {exc}")) from None
        except httpx.TransportError as exc:
            raise TransientError(self._redact(f"cannot reach the planner endpoint {self.url}: "
                                              f"{type(exc).__name__}: {exc}")) from None
        return await _off_loop_if_large(data, self._parse_turn, iteration)

    def _parse_turn(self, data: bytes, iteration: int) -> Turn:
        """The turn in an answer, with everything the endpoint said redacted (it may reflect the
        Authorization header)."""
        try:
            message = json.loads(data)["choices"][0]["message"]
            if not isinstance(message, dict):
                raise TypeError("message is not an object")
        except RecursionError:
            raise TransientError("the planner endpoint sent a malformed answer (JSON nested "
                                 "too deeply)") from None
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise TransientError(self._redact(f"the planner endpoint sent a malformed answer "
                                              f"({type(exc).__name__}: {exc})")) from None
        calls = []
        for i, call in enumerate(message.get("tool_calls") or []):
            call = call if isinstance(call, dict) else {}
            fn = call.get("function") if isinstance(call.get("function"), dict) else {}
            calls.append(ToolCall(self._redact(str(call.get("id") or f"call_{iteration}_{i}")),
                                  self._redact(str(fn.get("name") or "")),
                                  self._redact_arguments(fn.get("arguments"))))
        content = message.get("content")
        return Turn(calls, self._redact(content) if isinstance(content, str) else None)

    def _redact_arguments(self, raw: Any) -> Any:
        """Tool-call arguments (a JSON string, or already an object) without the key."""
        if not self._key:
            return raw
        try:
            return self._redact(raw) if isinstance(raw, str) else self._redact_json(raw)
        except RecursionError:  # too deep to search: keep nothing of it (not valid JSON)
            return "[redacted: nested too deeply]"

    def _redact_json(self, value: Any) -> Any:
        if isinstance(value, str):
            return self._redact(value)
        if isinstance(value, dict):
            return {self._redact_json(k): self._redact_json(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._redact_json(v) for v in value]
        return value

    def _http_error(self, data: bytes, status: int) -> str:
        detail: Any = ""
        try:
            err = json.loads(data).get("error")
            detail = err.get("message", "") if isinstance(err, dict) else str(err or "")
        except (ValueError, AttributeError, RecursionError):
            detail = data.decode("utf-8", "replace")
        # redact before cutting: a key cut in two would no longer be recognised whole
        detail = _cut(self._redact(str(detail)).strip(), ERROR_DETAIL)
        text = f"the planner endpoint answered HTTP {status}"
        return self._redact(f"{text}: {detail}" if detail else text)

    def observe(self, turn: Turn, results: list[tuple[bool, str]]) -> None:
        assistant: dict[str, Any] = {"role": "assistant", "content": turn.content}
        if turn.calls:
            assistant["tool_calls"] = [
                {"id": c.id, "type": "function",
                 "function": {"name": c.name, "arguments": c.arguments
                              if isinstance(c.arguments, str) else json.dumps(c.arguments)}}
                for c in turn.calls]
        self.messages.append(assistant)
        for call, (_, text) in zip(turn.calls, results, strict=True):
            self.messages.append({"role": "tool", "tool_call_id": call.id, "content": text})
        if not turn.calls:
            self.messages.append({"role": "user", "content": (
                "That answer had no tool call, so nothing was done. Use the tools: recommend "
                "actions with their tools, and call finish(summary) when the review is done.")})

    async def aclose(self) -> None:
        await self._client.aclose()


def _retry_after(resp: httpx.Response) -> float:
    try:
        return max(0.0, float(resp.headers.get("retry-after", "0")))
    except ValueError:
        return 0.0


async def _off_loop_if_large(data: bytes, parse: Callable[[bytes, int], T], arg: int) -> T:
    """parse(data, arg), in a worker thread when data is large: parsing and redacting a few MB
    would stall enforcement and the job's timeout."""
    if len(data) > PARSE_IN_THREAD:
        return await asyncio.to_thread(parse, data, arg)
    return parse(data, arg)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


async def _read(resp: httpx.Response, limit: int, *, cut: bool) -> bytes:
    """The body, read as it streams and never past limit bytes: cut there (an error answer), or
    a PermanentError (an answer)."""
    declared = resp.headers.get("content-length", "")
    if not cut and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    buf = bytearray()
    async for chunk in resp.aiter_bytes():
        buf += chunk
        if len(buf) > limit:
            if not cut:
                raise _too_large(limit)
            break
    return bytes(buf[:limit])


def _too_large(limit: int) -> PermanentError:
    return PermanentError(f"the model's answer is larger than {limit // MIB} MiB; it was not "
                          "read further and nothing of it was used")
