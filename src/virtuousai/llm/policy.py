"""When a failed call moves on to the next provider: one decision, as data.

pydantic-ai's models already map every SDK error to its own types (``ModelHTTPError`` with the status, and the
``ModelAPIError`` categories for connection failures, timeouts and undecodable bodies), so we decide on those types
only, never on an SDK's classes.

The rule: fall back when the *provider* failed (it is down, slow, overloaded, rate-limited, or this connection's
credentials, quota or model name are wrong there), and stop when the *request* is at fault, because another
provider would refuse the same request and we would pay to hear it again.

| outcome                                     | falls back | why                                                      |
|---------------------------------------------|------------|----------------------------------------------------------|
| connection refused / reset, transport error | yes        | the provider is unreachable                              |
| timeout (ours per attempt, or the SDK's)    | yes        | the provider is too slow right now                       |
| body that is not JSON                       | yes        | the provider (or a gateway in front of it) is broken     |
| 429 rate limit, 529 overloaded, 5xx         | yes        | the provider cannot serve now                            |
| 401, 403                                    | yes        | this connection's key is wrong or lacks access: the      |
|                                             |            | next provider has its own key. Logged as an error class  |
|                                             |            | on the attempt so the broken connection is visible.      |
| 402 (quota or billing exhausted)            | yes        | this connection's account, not the request               |
| 404 (model not found)                       | yes        | the model name is this connection's configuration; the   |
|                                             |            | request (URL, body) cannot produce a 404 by itself       |
| 408 request timeout                         | yes        | a timeout                                                |
| 400, 409, 413, 422 and every other 4xx      | no         | the request itself is invalid (bad arguments, too long   |
|                                             |            | for the context window, schema the provider refuses)     |
| anything that is not a pydantic-ai          | no         | a bug or a diverged script, not a provider failure       |
| ``ModelAPIError``                           |            |                                                          |
"""

from __future__ import annotations

from pydantic_ai.exceptions import (
    ModelAPIError,
    ModelAuthenticationError,
    ModelContextWindowExceededError,
    ModelHTTPError,
    ModelNotFoundError,
    ModelRequestRejectedError,
    UnexpectedModelBehavior,
)

# 4xx statuses that describe the provider or this connection rather than the request.
PROVIDER_SIDE_CLIENT_STATUSES = frozenset({401, 402, 403, 404, 408, 429})


# What a provider can fail with: an API error, or an answer the SDK could not make sense of (a malformed body or
# stream: another provider may well answer).
PROVIDER_FAILURES = (ModelAPIError, UnexpectedModelBehavior)


def falls_back(error: BaseException) -> bool:
    """Whether the chain tries its next member after ``error``."""
    if isinstance(error, UnexpectedModelBehavior):
        return True
    if not isinstance(error, ModelAPIError):
        return False
    if isinstance(error, ModelHTTPError):
        return error.status_code >= 500 or error.status_code in PROVIDER_SIDE_CLIENT_STATUSES
    if isinstance(error, ModelContextWindowExceededError):
        return False
    if isinstance(error, ModelRequestRejectedError):
        # Without an HTTP status (e.g. reported inside a stream): the same split by category.
        return isinstance(error, ModelAuthenticationError | ModelNotFoundError)
    # Quota, connection errors, timeouts (ModelRequestTimeout, ModelTimeoutError), undecodable bodies, overloads.
    return True


def error_class(error: BaseException) -> str:
    """A stable, public name for the kind of failure: pydantic-ai's category, not its private subclasses."""
    for cls in type(error).__mro__:
        if not cls.__name__.startswith("_"):
            return cls.__name__
    return type(error).__name__


def status_code(error: BaseException) -> int | None:
    return error.status_code if isinstance(error, ModelHTTPError) else None
