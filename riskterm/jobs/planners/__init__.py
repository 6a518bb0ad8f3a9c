"""Planners: what decides the Smart Risk Manager's tool calls (heuristic or an LLM)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: Any  # a JSON string (chat completions) or an object


@dataclass
class Turn:
    """One planner iteration: the tool calls it makes (and any text it said)."""

    calls: list[ToolCall] = field(default_factory=list)
    content: str | None = None


class Planner(Protocol):
    name: str
    model_used: str
    step_delay: float  # seconds waited before each graph step

    def begin(self, state: dict[str, Any], max_iterations: int) -> None: ...

    async def next_turn(self, iteration: int) -> Turn: ...

    def observe(self, turn: Turn, results: list[tuple[bool, str]]) -> None: ...

    async def aclose(self) -> None: ...


def make_planner(config: Any, *, transport: Any = None) -> Planner:
    if config.planner == "openai":
        from riskterm.jobs.planners.openai import OpenAIPlanner

        return OpenAIPlanner(config, transport=transport)
    from riskterm.jobs.planners.heuristic import HeuristicPlanner

    return HeuristicPlanner(config)
