"""Settings of the dashboard that are not rules: refresh rate, key map, deterministic output.

`deterministic=True` is what snapshot tests and the screenshot script use: no animations, no
blinking cursors, and nothing on screen derived from the wall clock (events/s is not shown;
clocks and durations are engine time, which in a replay is event time).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class AppSettings:
    deterministic: bool = False
    refresh_hz: float = 10.0  # how often folded engine updates are flushed to the screen
    jobs_poll_s: float = 0.5  # how often the job tables are re-read while visible
    history_limit: int = 1000  # rows of the violations history screen
    feed_size: int = 500  # lines kept by the live violations feed
    pnl_step_s: float = 1.0  # engine seconds between P&L chart points (doubles as the day fills)
    # binding id -> key(s), e.g. {"flatten": "F"}: see riskterm/tui/keys.py for the ids
    keymap: dict[str, str] = field(default_factory=dict)
