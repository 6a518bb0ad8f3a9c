"""ProjectX settings from the environment (CONTRACT §9). The API key is never shown."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

# C0, DEL, C1 and the bidi controls
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def has_controls(text: str) -> bool:
    return _CONTROLS.search(text) is not None

DEFAULT_API_URL = "https://api.topstepx.com"
DEFAULT_USER_HUB = "https://rtc.topstepx.com/hubs/user"
DEFAULT_MARKET_HUB = "https://rtc.topstepx.com/hubs/market"


class SettingsError(ValueError):
    """A setting is missing or unusable; the message names the variable, never the key."""


@dataclass(frozen=True, slots=True)
class ProjectXSettings:
    username: str
    api_key: str = field(repr=False)
    api_url: str = DEFAULT_API_URL
    user_hub: str = DEFAULT_USER_HUB
    market_hub: str = DEFAULT_MARKET_HUB

    def __repr__(self) -> str:
        return (
            f"ProjectXSettings(username={self.username!r}, api_key=<hidden>, "
            f"api_url={self.api_url!r}, user_hub={self.user_hub!r}, "
            f"market_hub={self.market_hub!r})"
        )

    __str__ = __repr__

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ProjectXSettings:
        env = os.environ if env is None else env
        username = _required(env, "PROJECTX_USERNAME").strip()
        if has_controls(username):
            raise SettingsError("PROJECTX_USERNAME contains control characters")
        key = _required(env, "PROJECTX_API_KEY").strip()
        if not key:
            raise SettingsError("PROJECTX_API_KEY is empty")
        if has_controls(key):
            # the key itself is never echoed, not even in part
            raise SettingsError("PROJECTX_API_KEY contains control characters")
        return cls(
            username=username,
            api_key=key,
            api_url=_url(env, "PROJECTX_API_URL", DEFAULT_API_URL).rstrip("/"),
            user_hub=_url(env, "PROJECTX_USER_HUB", DEFAULT_USER_HUB),
            market_hub=_url(env, "PROJECTX_MARKET_HUB", DEFAULT_MARKET_HUB),
        )


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name)
    if value is None or not value.strip():
        raise SettingsError(f"{name} is not set: the ProjectX source needs it in the environment")
    return value


def _url(env: Mapping[str, str], name: str, default: str) -> str:
    value = (env.get(name) or "").strip() or default
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https", "ws", "wss") or not parts.netloc:
        raise SettingsError(f"{name} is not an http(s) or ws(s) URL: {value!r}")
    if has_controls(value):
        raise SettingsError(f"{name} contains control characters")
    return value
