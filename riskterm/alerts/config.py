"""The ``alerts:`` block of rules.yaml: a list of notification targets (apprise URLs).

Decisions:
- A URL names its secrets as ``${ENV_VAR}`` references, expanded when the rules are loaded
  (check-rules, start, reload). An unset variable is an error; so is a secret that apprise would
  mask (a password, a token) written out in the file instead of coming from a variable.
- Every text about a target (check-rules, `alerts test`, an `alert_failed` warning) names it by
  its ``name`` or by the URL as written, with its ``${VAR}`` references unexpanded, and goes
  through ``AlertTarget.redact``, which puts the references back over any expanded value.
- apprise is imported only when a file has targets: it costs a tenth of a second at start-up.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal
from urllib.parse import quote, unquote

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, StrictInt, StrictStr

from riskterm.rules.params import MAX_DURATION, RULE_PARAMS, parse_duration

# What a target can ask for. Plain record kinds take every record of the kind; the others are a
# narrower choice within one kind.
KINDS = (
    "violation",  # every violation
    "violation_lockout",  # a violation that came with a lockout (the lockout is in its message)
    "warning",
    "enforcement",  # every enforcement
    "enforcement_failed",  # an enforcement with status failed
    "lockout",
    "unlock",
    "job",  # every job transition (queued, running, ...)
    "job_finished",  # a Smart Risk Manager job's final status
    "rejected",
)
DEFAULT_KINDS = ("violation_lockout", "enforcement_failed", "lockout", "job_finished")
# rules named in records besides the catalog's (CONTRACT §2, the engine's warnings)
EXTRA_RULES = ("trading_while_locked", "manual", "smart_risk", "resync", "unknown_instrument",
               "position_drift")
KNOWN_RULES = (*RULE_PARAMS, *EXTRA_RULES)
ALERT_FAILED = "alert_failed"  # the rule of the warning a failed delivery writes (never alerted)

_VAR = re.compile(r"\$\{([^}]*)\}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MIN_REDACT = 3  # expanded values shorter than this are not searched for in messages


def _duration(bound: float) -> BeforeValidator:
    def parse(v: object) -> float:
        if isinstance(v, float):  # a default, already in seconds
            return v
        seconds = parse_duration(v)
        if seconds > bound:
            raise ValueError(f"must be at most {bound:g} seconds")
        return seconds

    return BeforeValidator(parse)


def _check(pred: Any, message: str) -> AfterValidator:
    def check(v: Any) -> Any:
        if not pred(v):
            raise ValueError(message)
        return v

    return AfterValidator(check)


_MODEL = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
_Text = Annotated[StrictStr, _check(lambda v: bool(v.strip()), "must not be empty")]


def _known_rule(v: str) -> str:
    if v not in KNOWN_RULES:
        close = difflib.get_close_matches(v, KNOWN_RULES, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ValueError(f"must be a rule id{hint}")
    return v


class RateLimit(BaseModel):
    """At most ``messages`` per ``per`` (a sliding window); what is over it goes as one summary."""

    model_config = _MODEL
    messages: Annotated[StrictInt, _check(lambda v: 1 <= v <= 1000, "must be between 1 and 1000")]
    per: Annotated[float, _duration(MAX_DURATION)]


class AlertTargetSpec(BaseModel):
    """One ``alerts:`` entry as written (validated by pydantic; the URL is checked after)."""

    model_config = _MODEL
    url: _Text
    name: _Text | None = None
    kinds: Annotated[tuple[Literal[KINDS], ...],  # type: ignore[valid-type]
                     _check(bool, "needs at least one kind")] = DEFAULT_KINDS
    rules: Annotated[tuple[Annotated[StrictStr, AfterValidator(_known_rule)], ...] | None,
                     _check(lambda v: v is None or bool(v), "needs at least one rule "
                            "(leave it out for every rule)")] = None
    accounts: Annotated[tuple[_Text, ...] | None,
                        _check(lambda v: v is None or bool(v), "needs at least one account "
                               "pattern (leave it out for every account)")] = None
    rate_limit: RateLimit = RateLimit(messages=10, per=60.0)
    retries: Annotated[StrictInt, _check(lambda v: 0 <= v <= 10, "must be between 0 and 10")] = 3
    backoff: Annotated[float, _duration(600.0)] = 1.0  # the first wait; doubles each retry
    timeout: Annotated[float, _duration(300.0)] = 10.0  # one delivery attempt


@dataclass(frozen=True, eq=False)
class AlertTarget:
    """A checked target: the spec, and its URL with the variables expanded (never shown)."""

    spec: AlertTargetSpec
    label: str  # the name, or the URL as written: safe to show
    url: str = field(repr=False)  # expanded: holds secrets
    secrets: Mapping[str, str] = field(repr=False, default_factory=dict)  # var -> value

    def redact(self, text: str) -> str:
        """The text with every expanded value of this target's variables put back as ${VAR}."""
        for name, value in sorted(self.secrets.items(), key=lambda kv: -len(kv[1])):
            if len(value) >= MIN_REDACT:
                for form in {value, quote(value, safe=""), quote(value)}:
                    text = text.replace(form, "${" + name + "}")
        return text


class UrlProblem(Exception):
    """A URL that cannot be used; ``needle`` is the part of the written URL to point at."""

    def __init__(self, message: str, needle: str | None = None) -> None:
        super().__init__(message)
        self.needle = needle


def expand(url: str, env: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    """The URL with its ${VAR} references replaced, and the values used."""
    used: dict[str, str] = {}
    for m in _VAR.finditer(url):
        name = m[1]
        if not _NAME.fullmatch(name):
            raise UrlProblem(f"'${{{name}}}' is not an environment variable reference (write "
                             "${NAME} with letters, digits and _)", m[0])
        value = env.get(name)
        if value is None:
            raise UrlProblem(f"environment variable {name} is not set (the URL refers to it "
                             f"as ${{{name}}})", m[0])
        if not value:
            raise UrlProblem(f"environment variable {name} is empty", m[0])
        used[name] = value
    rest = _VAR.sub("", url)
    if "${" in rest:
        raise UrlProblem("has a '${' that is not closed with '}'", "${")
    return _VAR.sub(lambda m: used[m[1]], url), used


def schemes() -> set[str]:
    from apprise.manager_plugins import NotificationManager

    return {s.lower() for s in NotificationManager().schemas()}


def check_target(spec: AlertTargetSpec, env: Mapping[str, str] | None = None) -> AlertTarget:
    """Expand and check a target's URL with apprise; UrlProblem says what is wrong."""
    written = spec.url.strip()
    scheme, sep, _ = written.partition("://")
    if not sep or not scheme:
        raise UrlProblem("must be an apprise URL such as json://host/path or "
                         "tgram://${TELEGRAM_TOKEN}/CHAT_ID (scheme://...)")
    known = schemes()
    if scheme.lower() not in known:
        close = difflib.get_close_matches(scheme.lower(), sorted(known), n=1)
        hint = (f"did you mean '{close[0]}'?" if close else "apprise knows json, jsons, slack, "
                "discord, tgram, ntfy, pover, mailto and more: "
                "https://github.com/caronc/apprise/wiki")
        raise UrlProblem(f"unknown alert URL scheme '{scheme}' ({hint})", scheme)
    url, used = expand(written, os.environ if env is None else env)
    target = AlertTarget(spec, spec.name or written, url, used)
    import apprise

    plugin = apprise.Apprise.instantiate(url)
    if plugin is None:
        raise UrlProblem(f"apprise cannot read this {scheme}:// URL (see the apprise wiki page "
                         "of the service for its form)")
    if _literal_secret(plugin, used):
        shown = target.redact(plugin.url(privacy=True)).split("?")[0]
        raise UrlProblem(f"this {scheme}:// URL holds a secret written out in the file (apprise "
                         f"shows it as {shown}): put it in an environment variable and write "
                         "${NAME} in its place")
    return target


def _literal_secret(plugin: Any, used: Mapping[str, str]) -> bool:
    """Whether a part that apprise masks as private (a password, a token) came from no variable.

    apprise's private form keeps a secret's first and last character ("t...n", or "****"), so
    the masked fragments are found by diffing the two forms of the URL."""
    full, private = plugin.url(privacy=False), plugin.url(privacy=True)
    if full == private:
        return False
    values = [v for v in used.values() if v]
    ops = difflib.SequenceMatcher(None, full, private, autojunk=False).get_opcodes()
    for tag, i1, i2, _, _ in ops:
        if tag not in ("replace", "delete"):
            continue
        frag = unquote(full[i1:i2])
        if not any(frag in v or v[1:-1] in frag for v in values):
            return True
    return False
