"""HTTP policy for the Alpaca adapter: a timeout on every request, our own retry budget.

alpaca-py (0.44, ``alpaca/common/rest.py``) sends through a plain ``requests.Session``
with no timeout, and retries 429/504 three times with a fixed 3 s sleep inside
``RESTClient._request`` (attribute ``_retry``). We swap the session for one that bounds
every request and set ``_retry = 0`` so that all retrying happens here, against one
per-cycle budget (see ``RetryBudget``). Nothing here logs or raises a credential: a
venue's error text (which a proxy or error page could fill with the request's key) passes
through ``Redactor`` before it is logged, raised or handed on.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

import pydantic
import requests
import structlog
from alpaca.common.exceptions import APIError

from brokers.errors import (
    BrokerConfigError,
    BrokerDataError,
    BrokerTransientError,
    SubmitOutcomeUnknownError,
)

log = structlog.get_logger("brokers.alpaca")

T = TypeVar("T")

_EXCERPT_CHARS = 200
REDACTED = "***"  # the mask bot/logs.py writes for a secret
_MIN_SECRET_CHARS = 4  # shorter strings are not meaningful secrets (and would mask noise)


class Redactor:
    """Masks the adapter's own secrets (its API key id and secret) in venue text.

    Each secret is masked whole and also in its URL-quoted form (an error page may echo the
    request line). ``repr`` shows only how many secrets it holds.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        values = {s for s in secrets if len(s) >= _MIN_SECRET_CHARS}
        values |= {quoted for s in values if (quoted := quote(s, safe="")) != s}
        self._secrets = tuple(sorted(values, key=len, reverse=True))

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def __repr__(self) -> str:
        return f"Redactor({len(self._secrets)} secrets)"


def _no_redaction(text: str) -> str:
    return text


class TimeoutSession(requests.Session):
    """A ``requests.Session`` that gives every request ``timeout=timeout_secs``.

    ``timeout`` bounds the connect and each socket read (requests semantics), so a hung
    server fails the call after about ``timeout_secs`` instead of never.
    """

    def __init__(self, timeout_secs: float) -> None:
        super().__init__()
        self.timeout_secs = timeout_secs

    def request(self, method: str, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", self.timeout_secs)
        return super().request(method, url, *args, **kwargs)

    def __repr__(self) -> str:  # the SDK passes credentials as per-request headers only
        return f"TimeoutSession(timeout_secs={self.timeout_secs})"


def install_http_policy(client: Any, timeout_secs: float) -> None:
    """Bound every request of an alpaca-py REST client and switch off its own retry.

    Raises ``BrokerConfigError`` if the SDK's internals moved (checked, not assumed).
    """
    for attr in ("_session", "_retry"):
        if not hasattr(client, attr):
            raise BrokerConfigError(
                f"alpaca-py {type(client).__name__} has no attribute {attr!r}: the adapter "
                "was written for alpaca-py 0.44; pin alpaca-py>=0.44,<0.45"
            )
    client._session = TimeoutSession(timeout_secs)
    client._retry = 0


@dataclass(frozen=True, slots=True)
class ApiErrorInfo:
    """An Alpaca error answer: HTTP status, Alpaca's numeric code (if JSON), message."""

    status: int | None
    code: int | None
    message: str

    def describe(self) -> str:
        code = f"code {self.code}" if self.code is not None else "no code"
        return f"HTTP {self.status}, {code}: {self.message}"


def describe_api_error(exc: APIError, redact: Callable[[str], str] = _no_redaction
                       ) -> ApiErrorInfo:
    """Parse an ``APIError`` defensively: ``.code``/``.message`` raise on non-JSON bodies
    (an HTML 502 page from a proxy), so read the body text ourselves. ``redact`` masks
    secrets in the whole body before the message is cut to its excerpt (a cut must not
    leave half a key)."""
    text = redact(str(exc))
    try:
        payload = json.loads(text)
    except ValueError:
        payload = None
    if isinstance(payload, dict):
        raw_code = payload.get("code")
        code = (
            int(raw_code) if isinstance(raw_code, int | str) and str(raw_code).isdigit() else None
        )
        message = redact(str(payload.get("message", "")))[:_EXCERPT_CHARS]  # JSON-unescaped
    else:
        code = None
        message = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", text)).strip()[:_EXCERPT_CHARS]
    try:
        status = exc.status_code
    except AttributeError:
        status = None
    return ApiErrorInfo(status=status, code=code, message=message or "(empty body)")


def is_retryable(info: ApiErrorInfo) -> bool:
    """429 (rate limit) and every 5xx are worth retrying; other 4xx are answers."""
    return info.status is not None and (info.status == 429 or info.status >= 500)


class RetryBudget:
    """Retries with exponential backoff, bounded by seconds per cycle.

    The budget is spent by failed attempts (their duration) and by backoff sleeps; when the
    next sleep would overrun it, the call fails with ``BrokerTransientError``. ``reset()``
    (the broker's ``on_wake``) restores it for the next cycle; until then, once exhausted,
    any further retryable failure raises at once.
    Backoff: ``backoff_secs * 2**(attempt-1)``, capped at ``backoff_max_secs``.
    """

    def __init__(
        self,
        budget_secs: float,
        backoff_secs: float,
        backoff_max_secs: float,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        redact: Callable[[str], str] = _no_redaction,
    ) -> None:
        self.budget_secs = budget_secs
        self.backoff_secs = backoff_secs
        self.backoff_max_secs = backoff_max_secs
        self._sleep = sleep
        self._monotonic = monotonic
        self._redact = redact
        self.spent_secs = 0.0
        self.exhausted = False
        self.attempts = 0  # failed attempts of every request since the last reset

    def reset(self) -> None:
        self.spent_secs = 0.0
        self.exhausted = False
        self.attempts = 0

    def _excerpt(self, exc: Exception) -> str:
        """The start of an exception's text, secrets masked before the cut."""
        return self._redact(str(exc))[:_EXCERPT_CHARS]

    def call(
        self,
        what: str,
        fn: Callable[[], T],
        refused: Callable[[ApiErrorInfo], T] | None = None,
        creates: bool = False,
    ) -> T:
        """Run ``fn`` (one alpaca-py call), retrying 429/5xx/network errors.

        ``creates``: the request creates something at the venue (an order's submit). Given
        up after any attempt that may have been carried out unanswered — no answer at all
        (a read timeout, a dropped connection) or a 5xx — it raises
        ``SubmitOutcomeUnknownError``, not the plain ``BrokerTransientError``: a later
        429 or 5xx says nothing of that earlier attempt (a lost answer followed by 429s
        once let the next cycle sell the same shares again). Only 429s throughout (refused
        before processing) give the plain error.

        A non-retryable Alpaca answer goes to ``refused`` if given, else (and always for
        401, bad keys) becomes a ``BrokerConfigError`` naming ``what``. A response the SDK
        cannot parse becomes ``BrokerDataError``. Errors are raised outside the ``except``
        blocks so they carry no SDK exception as context: its frames hold the request
        headers, i.e. the keys. The venue's text is redacted before anything sees it (the
        ``refused`` callback, a log line, an error message).
        """
        attempt = 0
        maybe_done = False  # an attempt may have been carried out though unanswered
        while True:
            attempt += 1
            started = self._monotonic()
            failure: ApiErrorInfo | str
            unparsable: str | None = None
            try:
                return fn()
            except APIError as exc:
                failure = describe_api_error(exc, self._redact)
            except requests.RequestException as exc:
                failure = f"{type(exc).__name__}: {self._excerpt(exc)}"
            except pydantic.ValidationError as exc:
                failure = unparsable = self._redact(
                    f"{exc.error_count()} field errors, first at {exc.errors()[0]['loc']}: "
                    f"{exc.errors()[0]['msg']}"
                )
            except (TypeError, AttributeError, KeyError) as exc:
                # the SDK unpacks the JSON before validating it: a list where a table belongs
                # fails there (``**row``, ``.items()``), not in pydantic
                failure = unparsable = f"wrong shape: {type(exc).__name__}: {self._excerpt(exc)}"
            # Out of the except blocks: what we raise carries no SDK exception as context.
            if unparsable is not None:
                raise BrokerDataError(f"{what}: Alpaca's answer did not parse ({unparsable})")
            if isinstance(failure, ApiErrorInfo):
                if not is_retryable(failure):
                    if refused is not None and failure.status != 401:  # bad keys: always raise
                        return refused(failure)
                    raise _refusal_error(what, failure)
                cause = failure.describe()
                maybe_done |= failure.status != 429
            else:
                cause = failure
                maybe_done = True
            self.spent_secs += self._monotonic() - started
            self.attempts += 1
            delay_secs = min(self.backoff_secs * 2 ** (attempt - 1), self.backoff_max_secs)
            if self.exhausted or self.spent_secs + delay_secs > self.budget_secs:
                self.exhausted = True  # once given up, fail fast for the rest of the cycle
                log.error(
                    "retry_budget_exhausted",
                    request=what,
                    attempts=attempt,
                    spent_secs=round(self.spent_secs, 3),
                    budget_secs=self.budget_secs,
                    cause=cause,
                )
                # the budget is the wake's: earlier requests may have spent most of it
                spent_on = (f"{attempt} attempts" if attempt == self.attempts else
                            f"{attempt} attempt(s) of this request and {self.attempts} of all "
                            "this wake's requests")
                error = (SubmitOutcomeUnknownError if creates and maybe_done
                         else BrokerTransientError)
                raise error(
                    f"{what}: Alpaca still failing after {spent_on}; the wake's retry budget "
                    f"({self.budget_secs:g} s) is spent. Last error: {cause}. A daemon tries "
                    "again at its next wake."
                )
            log.warning(
                "request_retried",
                request=what,
                attempt=attempt,
                delay_secs=round(delay_secs, 3),
                cause=cause,
            )
            self._sleep(delay_secs)
            self.spent_secs += delay_secs


def _refusal_error(what: str, info: ApiErrorInfo) -> Exception:
    if info.status in (401, 403):
        return BrokerConfigError(
            f"{what}: Alpaca refused the request ({info.describe()}). Check the keys in "
            "APCA_API_KEY_ID / APCA_API_SECRET_KEY, that paper/live matches them and, for "
            "market data, that your data subscription covers [alpaca].feed."
        )
    return BrokerConfigError(f"{what}: Alpaca refused the request ({info.describe()})")
