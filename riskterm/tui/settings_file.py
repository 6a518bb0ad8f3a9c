"""The user's settings file: `settings.toml` in the per-user config directory (RISKTERM_CONFIG
names another file). Every key is checked on its own: a bad one is named with the reason and
its default is used instead, so a typo never stops the dashboard and never drops the rest.

    theme = "nord"                  # a Textual theme (ctrl+p "Change theme" lists them)
    time_zone = "Europe/London"     # clocks on screen; default: the rules file's timezone
    refresh_hz = 10                 # screen updates per second, 1 to 60
    [keys]                          # binding id = key(s), e.g. flatten = "F"; ids: see `?`
    rules = "R"
    [notifications]                 # halts, lockouts and failed enforcements
    toast = true
    bell = true
    desktop = true                  # OSC 9 / OSC 777 where the terminal is known to show them
    desktop_protocol = "auto"       # or "osc9", "osc777"
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from textual.keys import _character_to_key
from textual.theme import BUILTIN_THEMES

from riskterm.tui import keys as key_tables
from riskterm.tui.settings import AppSettings

ENV_VAR = "RISKTERM_CONFIG"
PROTOCOLS = ("auto", "osc9", "osc777")
REFRESH_RANGE = (1.0, 60.0)
_KEY = re.compile(r"^((ctrl|shift|alt|super|meta)\+)*[A-Za-z0-9_]+$")


def settings_path() -> Path:
    """RISKTERM_CONFIG if set, else settings.toml in the per-user config directory."""
    override = os.environ.get(ENV_VAR)
    if override:
        return Path(override).expanduser()
    from platformdirs import user_config_dir

    return Path(user_config_dir("riskterm")) / "settings.toml"


def key_groups() -> list[tuple[str, tuple[key_tables.KeyAction, ...]]]:
    """Every table of keys in riskterm.tui.keys (APP_KEYS, JOBS_KEYS, ...) by name."""
    return [(name, value) for name, value in vars(key_tables).items()
            if name.endswith("_KEYS") and isinstance(value, tuple) and value
            and all(isinstance(k, key_tables.KeyAction) for k in value)]


def load_settings(path: Path | None = None, base: AppSettings | None = None) -> AppSettings:
    """The settings of `path` (default settings_path()) over `base`; what was wrong with the
    file, key by key ("keys.flatten: q is already the key of quit; using the default"), is in
    the result's `problems`, which the app shows when it starts."""
    path = path or settings_path()
    base = base or AppSettings()
    problems: list[str] = []
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return replace(base, settings_file=str(path))
    except (OSError, UnicodeDecodeError) as exc:
        return replace(base, settings_file=str(path), problems=(
            f"cannot read the file ({exc}); using the default settings",))
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return replace(base, settings_file=str(path), problems=(
            f"not valid TOML: {exc}; using the default settings",))
    changes: dict[str, Any] = {}

    def bad(key: str, why: str) -> None:
        problems.append(f"{key}: {why}; using the default")

    for key, value in data.items():
        reader = _TOP.get(key)
        if reader is None:
            bad(key, f"unknown setting (known: {', '.join(_TOP)})")
            continue
        reader(value, changes, bad)
    return replace(base, settings_file=str(path), problems=tuple(problems), **changes)


Bad = Callable[[str, str], None]


def _theme(value: Any, out: dict[str, Any], bad: Bad) -> None:
    if not isinstance(value, str) or value not in BUILTIN_THEMES:
        bad("theme", f"{value!r} is not a theme (ctrl+p Theme lists them: "
                     f"{', '.join(list(BUILTIN_THEMES)[:4])}, ...)")
    else:
        out["theme"] = value


def _time_zone(value: Any, out: dict[str, Any], bad: Bad) -> None:
    try:
        if not isinstance(value, str) or not value:
            raise ValueError
        ZoneInfo(value)
    except (ValueError, ZoneInfoNotFoundError, OSError):
        bad("time_zone", f"{value!r} is not an IANA time zone name (like \"Europe/London\")")
        return
    out["time_zone"] = value


def _refresh(value: Any, out: dict[str, Any], bad: Bad) -> None:
    low, high = REFRESH_RANGE
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
            low <= value <= high):
        bad("refresh_hz", f"{value!r} is not a number from {low:g} to {high:g}")
    else:
        out["refresh_hz"] = float(value)


def _notifications(value: Any, out: dict[str, Any], bad: Bad) -> None:
    if not isinstance(value, dict):
        bad("notifications", "must be a table ([notifications] with toast, bell, desktop)")
        return
    for key, item in value.items():
        name = f"notifications.{key}"
        if key in ("toast", "bell", "desktop"):
            if isinstance(item, bool):
                out[f"notify_{key}"] = item
            else:
                bad(name, f"{item!r} is not true or false")
        elif key == "desktop_protocol":
            if item in PROTOCOLS:
                out["desktop_protocol"] = item
            else:
                bad(name, f"{item!r} is not one of {', '.join(PROTOCOLS)}")
        else:
            bad(name, "unknown setting (known: toast, bell, desktop, desktop_protocol)")


def _normal_key(text: str) -> str | None:
    """A key as Textual names it ("?" -> "question_mark"), or None if it is not a key."""
    text = text.strip()
    if len(text) == 1 and not text.isalnum():
        text = _character_to_key(text)
    return text if _KEY.match(text) else None


def _keys(value: Any, out: dict[str, Any], bad: Bad) -> None:
    if not isinstance(value, dict):
        bad("keys", "must be a table ([keys] with binding id = key)")
        return
    groups = key_groups()
    group_of = {k.id: name for name, keys in groups for k in keys}
    keymap: dict[str, str] = {}
    for binding_id, item in value.items():
        name = f"keys.{binding_id}"
        if binding_id not in group_of:
            bad(name, f"no key has this id (ids: {', '.join(sorted(group_of))})")
            continue
        if not isinstance(item, str) or not item.strip():
            bad(name, f"{item!r} is not a key name (like \"F\", \"ctrl+f\" or \"f5\")")
            continue
        parts = [_normal_key(p) for p in item.split(",")]
        if not all(parts):
            bad(name, f"{item!r} is not a key name (like \"F\", \"ctrl+f\" or \"f5\")")
            continue
        keymap[binding_id] = ",".join(p for p in parts if p)
    # a key taken by another binding that is active at the same time would shadow one of them
    for binding_id, keyspec in list(keymap.items()):
        mine = group_of[binding_id]
        for other_group, keys in groups:
            if mine != "APP_KEYS" and other_group not in ("APP_KEYS", mine):
                continue
            for other in keys:
                if other.id == binding_id:
                    continue
                taken = set(keymap.get(other.id, other.key).split(","))
                clash = taken & set(keyspec.split(","))
                if clash:
                    bad(f"keys.{binding_id}", f"{', '.join(sorted(clash))} is already the key "
                        f"of {other.id}")
                    keymap.pop(binding_id, None)
                    break
            if binding_id not in keymap:
                break
    if keymap:
        out["keymap"] = keymap


_TOP: dict[str, Callable[[Any, dict[str, Any], Bad], None]] = {
    "theme": _theme, "time_zone": _time_zone, "refresh_hz": _refresh,
    "keys": _keys, "notifications": _notifications,
}
