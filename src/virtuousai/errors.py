"""Domain errors. Services raise these; ``api/errors.py`` renders every one as RFC 9457 problem+json.

Each error carries its HTTP status and a stable problem ``type`` slug, so clients can branch on the type and the
service layer never imports the web framework.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

# Every problem's ``type`` is this plus its slug (``urn:virtuousai:problem:not-found``).
PROBLEM_TYPE_BASE = "urn:virtuousai:problem:"


class VaiError(Exception):
    status: int = 500
    type_slug: str = "internal-error"
    title: str = "Internal error"
    # Raised inside an action kind: whether another attempt could help (``runtime/executor.py`` reads it). The
    # errors that say the request itself is wrong (a missing connection, a refused input) are not retried.
    retryable: ClassVar[bool] = True

    def __init__(self, detail: str | None = None, *, errors: Sequence[FieldError] | None = None, **extra: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.errors = list(errors or [])
        self.extra = extra


class FieldError(dict[str, Any]):
    """One invalid field, shaped like Pydantic's errors: ``{"loc": [...], "msg": ..., "type": ...}``."""

    def __init__(self, loc: Sequence[str | int], msg: str, type: str = "value_error") -> None:
        super().__init__(loc=list(loc), msg=msg, type=type)


class BadRequest(VaiError):
    status, type_slug, title = 400, "bad-request", "Bad request"
    retryable = False


class Unauthorized(VaiError):
    status, type_slug, title = 401, "unauthorized", "Unauthorized"
    retryable = False


class Forbidden(VaiError):
    status, type_slug, title = 403, "forbidden", "Forbidden"
    retryable = False


class NotFound(VaiError):
    status, type_slug, title = 404, "not-found", "Not found"
    retryable = False


class Conflict(VaiError):
    status, type_slug, title = 409, "conflict", "Conflict"


class UnsupportedMediaType(VaiError):
    status, type_slug, title = 415, "unsupported-media-type", "Unsupported media type"
    retryable = False


class ValidationFailed(VaiError):
    status, type_slug, title = 422, "validation-error", "Validation failed"
    retryable = False

    @classmethod
    def at(cls, loc: Sequence[str | int], msg: str, type: str = "value_error") -> ValidationFailed:
        """One invalid field: ``ValidationFailed.at(["body", "slug"], "already used")``."""
        return cls(msg, errors=[FieldError(loc, msg, type)])


class ServiceUnavailable(VaiError):
    status, type_slug, title = 503, "unavailable", "Service unavailable"
