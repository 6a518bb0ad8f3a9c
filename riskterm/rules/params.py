"""Parameters of the 20 rules of the catalog (contract section 5), as validated pydantic models.

Each rule block of rules.yaml becomes one frozen ``*Params`` instance. Validators raise
``ValueError`` with a predicate phrase ("must be negative (a loss)"); riskterm.config turns it into
``PATH:LINE:COL: rules.x.limit must be negative (a loss), got 500``.

Decisions (where the contract leaves room):
- ``warn_at`` is a fraction with 0 < warn_at < 1. 1 is refused: a warning is never written when the
  same event breaches the limit, so warn_at 1 could never fire. Only rules with a numeric limit or
  target take it (``WARN_AT`` below); on the others it is an error.
- ``limit_pct`` (daily_total_loss: of the start-of-day balance; max_position_loss: of the
  position's entry notional) is a positive fraction in (0, 1]; it stands for a loss of that size.
  With both ``limit`` and ``limit_pct`` the tighter one (closer to zero) applies: see
  ``effective_limit``.
- ``max_pct`` of max_position_value_pct may exceed 1: futures are leveraged, one ES contract is
  several times the equity of a small account. It must be > 0 and finite.
- Counts (contract limits, max_orders, per_minute/per_hour/per_session) may be 0: nothing allowed.
  ``max_losses`` must be at least 1.
- ``lockout`` is accepted on every block; on trade_frequency_limit and cooldown_after_loss it is
  ignored because their own table (``cooldown``, ``tiers``) decides the lockout.
- symbol_blocks' default action is ("cancel_order", "close_position"): use ``actions_for`` to get
  cancel_order for an order and close_position for a fill.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

from riskterm import symbols as contract

if TYPE_CHECKING:
    from riskterm.calendar import TradingCalendar

ACTIONS: tuple[str, ...] = (
    "alert",
    "cancel_order",
    "cancel_orders",
    "close_position",
    "reduce_position",
    "flatten",
    "smart_review",
)

# --------------------------------------------------------------------------- durations, lockouts

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_RE = re.compile(r"(?:\d+(?:\.\d+)?[smhd])+")
_PART_RE = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
DURATION_HINT = "a duration like 90s, 15m, 2h or 1d"

# Load-time bounds: every duration and number of rules.yaml is refused, with its position, when
# it is outside what a real account could mean, so that no arithmetic on it can overflow (a
# lockout end past the year 9999, an infinite point value) once the engine runs.
MAX_DURATION_DAYS = 3660  # ten years and a little: longer is `permanent`, or a typo
MAX_DURATION = MAX_DURATION_DAYS * 86400.0
MAX_MONEY = 1e12  # any money amount, limit or target, in account currency
MAX_COUNT = 1_000_000_000  # contract limits, order and trade counts
MAX_SHARE = 1000.0  # max_pct: a position worth 1000 times the equity
DURATION_BOUND = f"at most {MAX_DURATION_DAYS}d (ten years)"
MONEY_BOUND = f"{MAX_MONEY:,.0f}"


def parse_duration(value: object) -> float:
    """Seconds of a duration such as ``90s``, ``15m``, ``2h``, ``1d`` or ``1h30m``.

    A bare number is refused (seconds or minutes?); the result is > 0 and at most
    MAX_DURATION.
    """
    if not isinstance(value, str) or not _DURATION_RE.fullmatch(value.strip().lower()):
        raise ValueError(f"must be {DURATION_HINT}")
    seconds = sum(float(n) * _UNITS[u] for n, u in _PART_RE.findall(value.strip().lower()))
    if seconds <= 0:
        raise ValueError("must be a duration longer than zero")
    if not seconds <= MAX_DURATION:  # also inf, from a number too long for a float
        raise ValueError(f"must be a duration of {DURATION_BOUND}")
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest YAML form of a duration: 90 -> "90s", 5400 -> "90m", 7200 -> "2h"."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s" if seconds == int(seconds) else f"{seconds:g}s"


LockoutKind = Literal["none", "duration", "until_reset", "until_session_start", "permanent"]
_LOCKOUT_WORDS = ("none", "until_reset", "until_session_start", "permanent")
LOCKOUT_HINT = f"none, {DURATION_HINT}, until_reset, until_session_start or permanent"


@dataclass(frozen=True, slots=True)
class Lockout:
    """How long an account stays locked after a violation."""

    kind: LockoutKind
    seconds: float | None = None  # only for kind "duration"

    @classmethod
    def parse(cls, value: object) -> Lockout:
        """Parse the YAML form; a YAML null means none. Raises ValueError."""
        if isinstance(value, Lockout):
            return value
        if value is None:
            return NO_LOCKOUT
        if isinstance(value, str):
            word = value.strip().lower()
            if word in _LOCKOUT_WORDS:
                return cls(word)  # type: ignore[arg-type]
            if _DURATION_RE.fullmatch(word):  # a duration: its own problem (zero, too long)
                try:
                    return cls("duration", parse_duration(word))
                except ValueError as exc:
                    raise ValueError(f"{exc} (a lockout that only `riskterm unlock` lifts "
                                     "is `permanent`)") from None
        raise ValueError(f"must be {LOCKOUT_HINT}")

    def __str__(self) -> str:
        if self.kind == "duration":
            return format_duration(self.seconds or 0.0)
        return self.kind

    @property
    def active(self) -> bool:
        return self.kind != "none"

    def until(self, ts: float, calendar: TradingCalendar) -> float | None:
        """When a lockout starting at ``ts`` ends: epoch seconds, or None for permanent.

        For kind "none" it returns ``ts`` (no lockout at all; check ``active`` first).
        """
        if self.kind == "duration":
            return ts + (self.seconds or 0.0)
        if self.kind == "until_reset":
            return calendar.next_reset(ts)
        if self.kind == "until_session_start":
            return calendar.next_session_start(ts)
        if self.kind == "permanent":
            return None
        return ts


NO_LOCKOUT = Lockout("none")

LockoutField = Annotated[Lockout, PlainValidator(Lockout.parse), PlainSerializer(str)]

# --------------------------------------------------------------------------- value types


def _check(pred: Any, message: str) -> AfterValidator:
    def check(v: Any) -> Any:
        if not pred(v):
            raise ValueError(message)
        return v

    return AfterValidator(check)


Loss = Annotated[StrictFloat, _check(lambda v: v < 0, "must be negative (a loss)"),
                 _check(lambda v: v >= -MAX_MONEY, f"must be no lower than -{MONEY_BOUND}")]
Money = Annotated[StrictFloat, _check(lambda v: v > 0, "must be greater than 0"),
                  _check(lambda v: v <= MAX_MONEY, f"must be at most {MONEY_BOUND}")]
_SECONDS_BOUND = _check(lambda v: v <= MAX_DURATION,
                       f"must be at most {MAX_DURATION:.0f} seconds ({MAX_DURATION_DAYS} days)")
Seconds = Annotated[StrictFloat, _check(lambda v: v > 0, "must be greater than 0"), _SECONDS_BOUND]
NonNegativeSeconds = Annotated[StrictFloat, _check(lambda v: v >= 0, "must be 0 or more"),
                               _SECONDS_BOUND]
Count = Annotated[StrictInt, _check(lambda v: v >= 0, "must be 0 or more"),
                  _check(lambda v: v <= MAX_COUNT, f"must be at most {MAX_COUNT:,}")]
Pct = Annotated[
    StrictFloat,
    _check(lambda v: 0 < v <= 1, "must be a fraction above 0 and at most 1 (0.02 is 2 %)"),
]
ActionName = Annotated[
    StrictStr, _check(lambda v: v in ACTIONS, "must be one of " + ", ".join(ACTIONS))
]


def _one_or_many(v: Any) -> Any:
    if isinstance(v, str):
        return (v,)
    if isinstance(v, list):
        if not v:
            raise ValueError("needs at least one action")
        return tuple(dict.fromkeys(v)) if all(isinstance(x, str) for x in v) else tuple(v)
    return v


Actions = Annotated[tuple[ActionName, ...], BeforeValidator(_one_or_many)]

_MODEL = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

# --------------------------------------------------------------------------- base


class RuleParams(BaseModel):
    """Keys every rule block takes (contract section 4)."""

    model_config = _MODEL

    RULE_ID: ClassVar[str]
    DEFAULT_ACTION: ClassVar[tuple[str, ...]]
    DEFAULT_LOCKOUT: ClassVar[str]
    WARN_AT: ClassVar[bool] = False  # the rule has a numeric limit or target
    REQUIRED: ClassVar[tuple[str, ...]] = ()  # documentation: parameters without a default

    enabled: StrictBool = True
    action: Actions = ()
    lockout: LockoutField = NO_LOCKOUT
    lockout_state: Literal["halted", "reducing"] = "halted"
    warn_at: StrictFloat | None = None

    @model_validator(mode="after")
    def _defaults(self) -> RuleParams:
        # Per-rule defaults, filled in without adding to model_fields_set, so that
        # `"action" in params.model_fields_set` still tells whether the user wrote one.
        if "action" not in self.model_fields_set:
            object.__setattr__(self, "action", self.DEFAULT_ACTION)
        if "lockout" not in self.model_fields_set:
            object.__setattr__(self, "lockout", Lockout.parse(self.DEFAULT_LOCKOUT))
        return self

    @field_validator("warn_at")
    @classmethod
    def _warn_at(cls, v: float | None) -> float | None:
        if v is None:
            return v
        if not cls.WARN_AT:
            raise ValueError("is not available on this rule (it has no numeric limit)")
        if not 0 < v < 1:
            raise ValueError("must be a fraction above 0 and below 1 (0.8 warns at 80 %)")
        return v


def _at_least_one(params: BaseModel, *names: str) -> None:
    if all(getattr(params, n) is None for n in names):
        raise ValueError("needs " + " or ".join(names))


def effective_limit(
    limit: float | None, limit_pct: float | None, base: float | None
) -> float | None:
    """The tighter (closer to zero) of ``limit`` and ``-limit_pct * |base|``; None if neither.

    ``base`` is the start-of-day balance or the entry notional; None when not known yet.
    """
    candidates = [] if limit is None else [limit]
    if limit_pct is not None and base is not None:
        candidates.append(-limit_pct * abs(base))
    return max(candidates) if candidates else None


# --------------------------------------------------------------------------- the catalog


class MaxContractsParams(RuleParams):
    RULE_ID = "max_contracts"
    DEFAULT_ACTION = ("reduce_position",)
    DEFAULT_LOCKOUT = "none"
    WARN_AT = True
    REQUIRED = ("limit",)
    limit: Count
    count: Literal["net", "gross"] = "net"


class MaxContractsPerInstrumentParams(RuleParams):
    RULE_ID = "max_contracts_per_instrument"
    DEFAULT_ACTION = ("reduce_position",)
    DEFAULT_LOCKOUT = "none"
    WARN_AT = True
    limits: dict[StrictStr, Count] = Field(default_factory=dict)
    default_limit: Count | None = None
    unknown_symbol: Literal["allow", "block"] = "allow"

    @model_validator(mode="after")
    def _some_limit(self) -> MaxContractsPerInstrumentParams:
        if not self.limits and self.default_limit is None and self.unknown_symbol == "allow":
            raise ValueError("needs limits, default_limit or unknown_symbol: block")
        return self

    def limit_for(self, symbol: str) -> int | None:
        """The contract limit of ``symbol``: None = no limit; 0 when unknown symbols are blocked."""
        limit = contract.lookup(self.limits, symbol)  # the symbol, else its root
        if limit is not None:
            return limit
        if self.default_limit is not None:
            return self.default_limit
        return 0 if self.unknown_symbol == "block" else None


class MaxOrderSizeParams(RuleParams):
    RULE_ID = "max_order_size"
    DEFAULT_ACTION = ("cancel_order",)
    DEFAULT_LOCKOUT = "none"
    WARN_AT = True
    max_qty: Count | None = None
    max_notional: Money | None = None
    min_notional: Money | None = None

    @model_validator(mode="after")
    def _bounds(self) -> MaxOrderSizeParams:
        _at_least_one(self, "max_qty", "max_notional", "min_notional")
        if (self.min_notional is not None and self.max_notional is not None
                and self.min_notional > self.max_notional):
            raise ValueError("min_notional must not exceed max_notional")
        return self


class OrderRateLimitParams(RuleParams):
    RULE_ID = "order_rate_limit"
    DEFAULT_ACTION = ("cancel_order",)
    DEFAULT_LOCKOUT = "none"
    WARN_AT = True
    REQUIRED = ("max_orders",)
    max_orders: Count
    per_seconds: Seconds = 1.0


class DailyRealizedLossParams(RuleParams):
    RULE_ID = "daily_realized_loss"
    DEFAULT_ACTION = ("flatten",)
    DEFAULT_LOCKOUT = "until_reset"
    WARN_AT = True
    REQUIRED = ("limit",)
    limit: Loss


class DailyRealizedProfitParams(RuleParams):
    RULE_ID = "daily_realized_profit"
    DEFAULT_ACTION = ("flatten",)
    DEFAULT_LOCKOUT = "until_reset"
    WARN_AT = True
    REQUIRED = ("target",)
    target: Money


class DailyTotalLossParams(RuleParams):
    """``limit_pct`` is a fraction of the start-of-day balance."""

    RULE_ID = "daily_total_loss"
    DEFAULT_ACTION = ("flatten",)
    DEFAULT_LOCKOUT = "until_reset"
    WARN_AT = True
    limit: Loss | None = None
    limit_pct: Pct | None = None

    @model_validator(mode="after")
    def _one(self) -> DailyTotalLossParams:
        _at_least_one(self, "limit", "limit_pct")
        return self

    def effective_limit(self, start_balance: float | None) -> float | None:
        return effective_limit(self.limit, self.limit_pct, start_balance)


class DailyUnrealizedLossParams(RuleParams):
    RULE_ID = "daily_unrealized_loss"
    DEFAULT_ACTION = ("flatten",)
    DEFAULT_LOCKOUT = "none"
    WARN_AT = True
    REQUIRED = ("limit",)
    limit: Loss


class MaxPositionLossParams(RuleParams):
    """``limit_pct`` is a fraction of the entry notional: abs(qty) * avg price * point value."""

    RULE_ID = "max_position_loss"
    DEFAULT_ACTION = ("close_position",)
    DEFAULT_LOCKOUT = "none"
    WARN_AT = True
    limit: Loss | None = None
    limit_pct: Pct | None = None

    @model_validator(mode="after")
    def _one(self) -> MaxPositionLossParams:
        _at_least_one(self, "limit", "limit_pct")
        return self

    def effective_limit(self, entry_notional: float | None) -> float | None:
        return effective_limit(self.limit, self.limit_pct, entry_notional)


class MaxUnrealizedProfitParams(RuleParams):
    RULE_ID = "max_unrealized_profit"
    DEFAULT_ACTION = ("close_position",)
    DEFAULT_LOCKOUT = "none"
    WARN_AT = True
    REQUIRED = ("target",)
    target: Money


class TrailingDrawdownParams(RuleParams):
    RULE_ID = "trailing_drawdown"
    DEFAULT_ACTION = ("flatten",)
    DEFAULT_LOCKOUT = "permanent"
    WARN_AT = True
    REQUIRED = ("amount",)
    amount: Money
    mode: Literal["intraday", "eod"] = "intraday"
    stop_at_start_balance: StrictBool = True


class MaxPositionValuePctParams(RuleParams):
    RULE_ID = "max_position_value_pct"
    DEFAULT_ACTION = ("reduce_position",)
    DEFAULT_LOCKOUT = "none"
    WARN_AT = True
    REQUIRED = ("max_pct",)
    max_pct: Annotated[
        StrictFloat, _check(lambda v: v > 0, "must be a fraction greater than 0 (0.3 is 30 %)"),
        _check(lambda v: v <= MAX_SHARE, f"must be at most {MAX_SHARE:g} (100,000 %)"),
    ]


class MaxTotalExposureParams(RuleParams):
    RULE_ID = "max_total_exposure"
    DEFAULT_ACTION = ("alert",)
    DEFAULT_LOCKOUT = "none"
    WARN_AT = True
    REQUIRED = ("limit",)
    limit: Money


class FrequencyCooldown(BaseModel):
    """trade_frequency_limit's lockout table: which window was breached decides the lockout."""

    model_config = _MODEL
    per_minute: LockoutField = Lockout("duration", 60.0)
    per_hour: LockoutField = Lockout("duration", 1800.0)
    per_session: LockoutField = Lockout("until_reset")


class TradeFrequencyLimitParams(RuleParams):
    """Windows are checked minute, hour, session (trading day); the first breached decides."""

    RULE_ID = "trade_frequency_limit"
    DEFAULT_ACTION = ("alert",)
    DEFAULT_LOCKOUT = "none"  # unused: ``cooldown`` decides
    WARN_AT = True
    per_minute: Count | None = None
    per_hour: Count | None = None
    per_session: Count | None = None
    cooldown: FrequencyCooldown = FrequencyCooldown()

    @model_validator(mode="after")
    def _one(self) -> TradeFrequencyLimitParams:
        _at_least_one(self, "per_minute", "per_hour", "per_session")
        return self


class LossTier(BaseModel):
    model_config = _MODEL
    loss: Loss
    lockout: LockoutField


class CooldownAfterLossParams(RuleParams):
    RULE_ID = "cooldown_after_loss"
    DEFAULT_ACTION = ("flatten",)
    DEFAULT_LOCKOUT = "none"  # unused: the matching tier's lockout decides
    REQUIRED = ("tiers",)
    tiers: tuple[LossTier, ...]

    @field_validator("tiers")
    @classmethod
    def _tiers(cls, v: tuple[LossTier, ...]) -> tuple[LossTier, ...]:
        if not v:
            raise ValueError("needs at least one tier")
        return v

    def tier_for(self, realized: float) -> LossTier | None:
        """The deepest tier whose loss the realized P&L reaches (≤), or None."""
        hit = [t for t in self.tiers if realized <= t.loss]
        return min(hit, key=lambda t: t.loss) if hit else None


class ConsecutiveLossesParams(RuleParams):
    RULE_ID = "consecutive_losses"
    DEFAULT_ACTION = ("flatten",)
    DEFAULT_LOCKOUT = "1h"
    WARN_AT = True
    REQUIRED = ("max_losses",)
    max_losses: Annotated[StrictInt, _check(lambda v: v >= 1, "must be at least 1"),
                          _check(lambda v: v <= MAX_COUNT, f"must be at most {MAX_COUNT:,}")]


class NoStopLossGraceParams(RuleParams):
    RULE_ID = "no_stop_loss_grace"
    DEFAULT_ACTION = ("close_position",)
    DEFAULT_LOCKOUT = "none"
    grace_seconds: NonNegativeSeconds = 30.0


class SessionBlockOutsideParams(RuleParams):
    RULE_ID = "session_block_outside"
    DEFAULT_ACTION = ("flatten",)
    DEFAULT_LOCKOUT = "until_session_start"
    flatten_at_close: StrictBool = True


class SymbolBlocksParams(RuleParams):
    """``symbols`` are fnmatch patterns matched case-insensitively."""

    RULE_ID = "symbol_blocks"
    DEFAULT_ACTION = ("cancel_order", "close_position")
    DEFAULT_LOCKOUT = "none"
    REQUIRED = ("symbols",)
    symbols: Annotated[
        tuple[StrictStr, ...], BeforeValidator(lambda v: (v,) if isinstance(v, str) else v)
    ]

    def blocks(self, symbol: str) -> bool:
        """Does a pattern match the symbol or its root?"""
        return contract.match(self.symbols, symbol) is not None

    def actions_for(self, is_order: bool) -> tuple[str, ...]:
        """The default is cancel_order for an order and close_position for a fill."""
        if "action" not in self.model_fields_set:
            return ("cancel_order",) if is_order else ("close_position",)
        return self.action


class AuthLossGuardParams(RuleParams):
    RULE_ID = "auth_loss_guard"
    DEFAULT_ACTION = ("alert",)
    DEFAULT_LOCKOUT = "none"


RULE_PARAMS: dict[str, type[RuleParams]] = {
    cls.RULE_ID: cls
    for cls in (
        MaxContractsParams,
        MaxContractsPerInstrumentParams,
        MaxOrderSizeParams,
        OrderRateLimitParams,
        DailyRealizedLossParams,
        DailyRealizedProfitParams,
        DailyTotalLossParams,
        DailyUnrealizedLossParams,
        MaxPositionLossParams,
        MaxUnrealizedProfitParams,
        TrailingDrawdownParams,
        MaxPositionValuePctParams,
        MaxTotalExposureParams,
        TradeFrequencyLimitParams,
        CooldownAfterLossParams,
        ConsecutiveLossesParams,
        NoStopLossGraceParams,
        SessionBlockOutsideParams,
        SymbolBlocksParams,
        AuthLossGuardParams,
    )
}
