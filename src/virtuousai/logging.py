"""Logging: plain text or JSON lines, with the request id on every line."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from datetime import UTC, datetime

from virtuousai.timeutil import isoformat, json_default

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

_STANDARD_ATTRS = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get() or "-"
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, object] = {
            "ts": isoformat(datetime.fromtimestamp(record.created, UTC)),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
        }
        payload.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD_ATTRS and k != "request_id"})
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=json_default)


class OurHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The one handler every line goes through. Its format is fixed when it is made: a library that configures
    logging itself (dlt sets its own pipe-delimited formatter on the first handler of its logger, on every run)
    cannot change how it writes."""

    def __init__(self, formatter: logging.Formatter) -> None:
        super().__init__(sys.stderr)
        self.formatter = formatter
        self.addFilter(RequestIdFilter())

    def setFormatter(self, fmt: logging.Formatter | None) -> None:
        pass  # see the class docstring


# Libraries that install handlers of their own (and dlt turns propagation off on every run): they get ours.
SELF_CONFIGURED_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "dlt")


def configure_logging(level: str = "INFO", fmt: str = "plain") -> None:
    """Every log line of the process, ours and third-party, in one format (``VAI_LOG_FORMAT``) on stderr."""
    formatter = (
        JsonFormatter()
        if fmt == "json"
        else logging.Formatter("%(asctime)s %(levelname)-7s [%(request_id)s] %(name)s: %(message)s")
    )
    handler = OurHandler(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Alembic announces its context on every run (also on /readyz checks); that is noise, not information.
    logging.getLogger("alembic").setLevel("WARNING")
    for name in SELF_CONFIGURED_LOGGERS:
        library = logging.getLogger(name)
        library.handlers[:] = [handler]
        library.propagate = False
    logging.captureWarnings(True)  # warnings.warn(...) of libraries: log lines too, not bare stderr text
