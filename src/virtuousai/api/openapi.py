"""What /openapi.json says beyond what FastAPI derives from the routes: answers our shared mechanisms give.

FastAPI builds the document once, on first use (``app.openapi``); ``complete_openapi`` wraps that and adds, to every
operation, what the app-wide machinery can answer there (FastAPI documents this as "Extending OpenAPI"):

- ``415`` on every operation with a request body (``api/deps.require_json_body``).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from virtuousai.api.problems import problem_doc

UNSUPPORTED_MEDIA_TYPE = problem_doc("The body is not declared as JSON (`Content-Type: application/json`)")


def complete_openapi(app: FastAPI) -> None:
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = generate()
        for operations in document.get("paths", {}).values():
            for operation in operations.values():
                if "requestBody" in operation:
                    operation["responses"].setdefault("415", _response(UNSUPPORTED_MEDIA_TYPE))
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def _response(doc: dict[str, Any]) -> dict[str, Any]:
    return {"description": doc["description"], "content": doc["content"]}
