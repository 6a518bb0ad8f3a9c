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
    # from the user's settings file (riskterm/tui/settings_file.py)
    theme: str | None = None  # a Textual theme name; None: Textual's default
    time_zone: str | None = None  # IANA name for clocks on screen; None: the rules' timezone
    notify_toast: bool = True  # halts, lockouts, failed enforcements: a toast ...
    notify_bell: bool = True  # ... the terminal bell ...
    notify_desktop: bool = True  # ... and a desktop notification (OSC 9 / 777) if supported
    desktop_protocol: str = "auto"  # "auto" (from the terminal's environment), "osc9", "osc777"
    attention_window_s: float = 0.3  # alerts arriving this close together make one notice
    attention_gap_s: float = 5.0  # at most one notice per this many seconds (a storm: a summary)
    settings_file: str | None = None  # the file these came from
    problems: tuple[str, ...] = ()  # what was wrong with that file, key by key
