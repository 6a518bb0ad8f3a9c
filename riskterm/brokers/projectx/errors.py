"""Errors of the ProjectX adapter, and the redaction that keeps secrets out of their text."""

from __future__ import annotations

from collections.abc import Iterable

# errorCode tables of the Gateway (index = code), transcribed from its swagger
LOGIN_CODES = (
    "Success", "UserNotFound", "PasswordVerificationFailed", "InvalidCredentials", "AppNotFound",
    "AppVerificationFailed", "InvalidDevice", "AgreementsNotSigned", "UnknownError",
    "ApiSubscriptionNotFound", "ApiKeyAuthenticationDisabled",
)
VALIDATE_CODES = ("Success", "InvalidSession", "SessionNotFound", "ExpiredToken", "UnknownError")
SEARCH_CODES = ("Success", "AccountNotFound")
CONTRACT_BY_ID_CODES = ("Success", "ContractNotFound")
PLACE_CODES = (
    "Success", "AccountNotFound", "OrderRejected", "InsufficientFunds", "AccountViolation",
    "OutsideTradingHours", "OrderPending", "UnknownError", "ContractNotFound",
    "ContractNotActive", "AccountRejected",
)
CANCEL_CODES = (
    "Success", "AccountNotFound", "OrderNotFound", "Rejected", "Pending", "UnknownError",
    "AccountRejected",
)
MODIFY_CODES = (*CANCEL_CODES, "ContractNotFound")
CLOSE_CODES = (
    "Success", "AccountNotFound", "PositionNotFound", "ContractNotFound", "ContractNotActive",
    "OrderRejected", "OrderPending", "UnknownError", "AccountRejected",
)
PARTIAL_CLOSE_CODES = (*CLOSE_CODES[:5], "InvalidCloseSize", *CLOSE_CODES[5:])

ERROR_CODES: dict[str, tuple[str, ...]] = {
    "Auth/loginKey": LOGIN_CODES,
    "Auth/validate": VALIDATE_CODES,
    "Account/search": SEARCH_CODES,
    "Order/search": SEARCH_CODES,
    "Order/searchOpen": SEARCH_CODES,
    "Position/searchOpen": SEARCH_CODES,
    "Trade/search": SEARCH_CODES,
    "Contract/searchById": CONTRACT_BY_ID_CODES,
    "Order/place": PLACE_CODES,
    "Order/cancel": CANCEL_CODES,
    "Order/modify": MODIFY_CODES,
    "Position/closeContract": CLOSE_CODES,
    "Position/partialCloseContract": PARTIAL_CLOSE_CODES,
}


def code_name(endpoint: str, code: int) -> str:
    table = ERROR_CODES.get(endpoint, ())
    return table[code] if 0 <= code < len(table) else f"code {code}"


class Redactor:
    """Replaces every known secret (the API key, each token seen) in a text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: list[str] = []
        for s in secrets:
            self.add(s)

    def add(self, secret: str | None) -> None:
        # very short strings would mangle ordinary text; real keys and JWTs are long
        if secret and len(secret) >= 8 and secret not in self._secrets:
            self._secrets.append(secret)
            self._secrets.sort(key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for s in self._secrets:
            if s in text:
                text = text.replace(s, "<redacted>")
        return text


class ProjectXError(Exception):
    """Any failure of the ProjectX adapter; its text never holds the key or a token."""


class AuthError(ProjectXError):
    """Login refused, or a call still answered 401 after one fresh login."""


class GatewayUnavailable(ProjectXError):
    """5xx, timeouts or connection failures that outlasted the retries, or 429 that never ended."""


class GatewayProtocolError(ProjectXError):
    """An answer of a shape the Gateway does not send (not JSON, not an object)."""


class BusinessError(ProjectXError):
    """HTTP 200 with success:false: the Gateway refused the request."""

    def __init__(self, endpoint: str, code: int, message: str | None) -> None:
        self.endpoint = endpoint
        self.error_code = code
        self.code_name = code_name(endpoint, code)
        self.error_message = message
        text = f"{endpoint} refused: {self.code_name} (errorCode {code})"
        if message:
            text += f": {message}"
        super().__init__(text)
