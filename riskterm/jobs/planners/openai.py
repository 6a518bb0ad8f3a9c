"""A planner over any OpenAI-compatible chat-completions endpoint (OpenAI, Ollama, vLLM,
llama.cpp server) with tool calling, over httpx.

Each iteration is one POST {base_url}/chat/completions. Connect errors, timeouts, 429 and 5xx
raise TransientError (the pool retries the job with backoff); other 4xx raise PermanentError.
The API key comes from the environment variable named by api_key_env and is only ever put in
the Authorization header: never in errors, events or graph_state.
"""

from __future__ import annotations

import json
import os
from typing import Any

import httpx

from riskterm.jobs.errors import PermanentError, TransientError
from riskterm.jobs.planners import ToolCall, Turn
from riskterm.jobs.tools import openai_tools

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
        self._key = os.environ.get(str(config.api_key_env)) or None
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

    def _redact(self, text: str) -> str:
        return text.replace(self._key, "[redacted]") if self._key else text

    async def next_turn(self, iteration: int) -> Turn:
        body = {"model": self.model_used, "messages": self.messages,
                "tools": openai_tools(tuple(self.config.allow)), "tool_choice": "auto",
                "temperature": 0}
        headers = {"Content-Type": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        try:
            resp = await self._client.post(self.url, json=body, headers=headers)
        except httpx.TimeoutException as exc:
            raise TransientError(f"the planner endpoint {self.url} timed out "
                                 f"({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            raise TransientError(self._redact(f"cannot reach the planner endpoint {self.url}: "
                                              f"{type(exc).__name__}: {exc}")) from None
        if resp.status_code == 429 or resp.status_code >= 500:
            err = TransientError(self._http_error(resp))
            err.retry_after = _retry_after(resp)  # type: ignore[attr-defined]
            raise err
        if resp.status_code >= 400:
            raise PermanentError(self._http_error(resp))
        try:
            message = resp.json()["choices"][0]["message"]
            if not isinstance(message, dict):
                raise TypeError("message is not an object")
        except RecursionError:
            raise TransientError("the planner endpoint sent a malformed answer (JSON nested "
                                 "too deeply)") from None
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise TransientError(f"the planner endpoint sent a malformed answer "
                                 f"({type(exc).__name__}: {exc})") from None
        # an endpoint may reflect the Authorization header: nothing it says is stored unredacted
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
            if not isinstance(raw, str):
                return self._redact_json(raw)
            text = self._redact(raw)
            try:
                value = json.loads(text)
            except ValueError:
                return text
            if self._key not in json.dumps(value, ensure_ascii=False):
                return text
            # the key written with JSON escapes (\u0073k-...) survives replace() on the text
            return json.dumps(self._redact_json(value))
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

    def _http_error(self, resp: httpx.Response) -> str:
        detail = ""
        try:
            err = resp.json().get("error")
            detail = err.get("message", "") if isinstance(err, dict) else str(err or "")
        except (ValueError, AttributeError):
            # redact first: a key cut in two would escape replace()
            detail = self._redact(resp.text)[:200]
        text = f"the planner endpoint answered HTTP {resp.status_code}"
        return self._redact(f"{text}: {detail.strip()}" if detail.strip() else text)

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
