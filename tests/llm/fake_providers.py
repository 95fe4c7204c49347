"""A loopback HTTP server that speaks the OpenAI chat-completions and Anthropic messages wire formats.

The real SDK clients (``openai``, ``anthropic``) talk to it through pydantic-ai's models, so the tests exercise the
same parsing, error mapping and streaming code that production uses. Nothing leaves 127.0.0.1.

The behaviour is chosen by the URL, so one server serves every test at once without shared state:

    http://127.0.0.1:<port>/<tag>/<scenario>/v1/chat/completions   (OpenAI; base_url = …/<tag>/<scenario>/v1)
    http://127.0.0.1:<port>/<tag>/<scenario>/v1/messages           (Anthropic; base_url = …/<tag>/<scenario>)

``tag`` is any label (the tests use it to name which chain member answered, and find its requests in ``log``).
Scenarios: ``ok`` (text), ``tool`` (one tool call), ``status-<code>`` (an error status with the provider's error
body), ``hang`` (no answer until the client gives up), ``malformed`` (200 with a body that is not JSON),
``die-after-first-token`` (streams one token, then the provider reports an error inside the stream),
``error-before-first-token`` (the stream opens, then reports an overload before any content).

Scripted conversations (the agent tests): ``server.script(turns)`` registers a list of ``Turn`` (or a function of
the request) and returns its scenario, ``script-<n>``. Each request is answered with the turn whose index is the
number of assistant messages it carries (so a retried request gets the same answer, and a run that crashed and
resumed asks for the turn it had reached), streamed or not, in either wire format. A turn may hold its answer until
a ``threading.Event`` is set (a crash test kills the worker while the call is in flight).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.helpers import eventually_sync

REPLY_TEXT = "Hello from {tag}"
INPUT_TOKENS = 12
OUTPUT_TOKENS = 7
HANG_LIMIT_S = 30.0  # a hanging request gives up by itself, so the server can always shut down


@dataclass
class SeenRequest:
    tag: str
    scenario: str
    api: str  # "openai" | "anthropic"
    body: dict[str, Any]

    @property
    def turn(self) -> int:
        """How many assistant messages the conversation already has: the index of the turn it asks for."""
        return sum(1 for message in self.body.get("messages", []) if message.get("role") == "assistant")

    @property
    def tool_names(self) -> list[str]:
        """The tools the request offered the model."""
        tools = self.body.get("tools") or []
        return [t["function"]["name"] if "function" in t else t["name"] for t in tools]

    @property
    def tool_results(self) -> list[str]:
        """Every tool result the conversation carries, in order (both wire formats)."""
        found: list[str] = []
        for message in self.body.get("messages", []):
            if message.get("role") == "tool":
                found.append(str(message.get("content")))
            content = message.get("content")
            if isinstance(content, list):
                found += [str(part.get("content")) for part in content if part.get("type") == "tool_result"]
        return found


@dataclass
class Turn:
    """One answer of a scripted model: text and/or tool calls (``args`` a dict, or a raw string sent as is)."""

    text: str = ""
    tool_calls: list[tuple[str, dict[str, Any] | str]] = field(default_factory=list)
    input_tokens: int = INPUT_TOKENS
    output_tokens: int = OUTPUT_TOKENS
    hold: threading.Event | None = None  # answer only once this is set
    status: int | None = None  # answer with this error status instead

    def call_id(self, turn: int, index: int) -> str:
        return f"call_{turn}_{index}"


Script = list[Turn] | Callable[[SeenRequest], Turn]


@dataclass
class FakeProviderServer:
    host: str = "127.0.0.1"
    port: int = 0
    log: list[SeenRequest] = field(default_factory=list)
    scripts: dict[str, Script] = field(default_factory=dict)

    def script(self, turns: Script) -> str:
        """Register a scripted conversation; returns its scenario name (for the base URLs)."""
        name = f"script-{len(self.scripts) + 1}-{secrets.token_hex(3)}"
        self.scripts[name] = turns
        return name

    def turn_for(self, seen: SeenRequest) -> Turn:
        script = self.scripts[seen.scenario]
        if callable(script):
            return script(seen)
        if seen.turn >= len(script):
            return Turn(status=400, text=f"the script has {len(script)} turns; turn {seen.turn} was asked for")
        return script[seen.turn]

    def openai_base_url(self, tag: str, scenario: str) -> str:
        return f"http://{self.host}:{self.port}/{tag}/{scenario}/v1"

    def anthropic_base_url(self, tag: str, scenario: str) -> str:
        return f"http://{self.host}:{self.port}/{tag}/{scenario}"

    def requests_for(self, tag: str) -> list[SeenRequest]:
        return [seen for seen in list(self.log) if seen.tag == tag]


def _sse(data: Any, event: str | None = None) -> bytes:
    prefix = f"event: {event}\n" if event else ""
    payload = data if isinstance(data, str) else json.dumps(data)
    return f"{prefix}data: {payload}\n\n".encode()


async def _hang(request: Request) -> Response:
    deadline = time.monotonic() + HANG_LIMIT_S
    while time.monotonic() < deadline and not await request.is_disconnected():
        await asyncio.sleep(0.05)
    return Response(status_code=504)


# --- OpenAI chat completions -------------------------------------------------------------------------------------


def _openai_error(status: int) -> JSONResponse:
    kinds = {400: "invalid_request_error", 401: "invalid_api_key", 404: "model_not_found", 429: "rate_limit_exceeded"}
    code = kinds.get(status, "server_error")
    return JSONResponse(
        {"error": {"message": f"fake {status}", "type": code, "param": None, "code": code}}, status_code=status
    )


def _openai_usage() -> dict[str, int]:
    return {"prompt_tokens": INPUT_TOKENS, "completion_tokens": OUTPUT_TOKENS, "total_tokens": 19}


def _openai_message(tag: str, scenario: str) -> dict[str, Any]:
    if scenario == "tool":
        call = {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"q": "x"}'}}
        return {"role": "assistant", "content": None, "tool_calls": [call]}
    return {"role": "assistant", "content": REPLY_TEXT.format(tag=tag)}


def _openai_chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


async def _openai_stream(tag: str, scenario: str, model: str) -> AsyncIterator[bytes]:
    yield _sse(_openai_chunk(model, {"role": "assistant", "content": ""}))
    if scenario == "error-before-first-token":
        yield _sse({"error": {"message": "overloaded", "type": "server_error", "code": "server_error"}})
        return
    if scenario == "tool":
        yield _sse(
            _openai_chunk(
                model,
                {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "lookup", "arguments": ""},
                        }
                    ]
                },
            )
        )
        yield _sse(_openai_chunk(model, {"tool_calls": [{"index": 0, "function": {"arguments": '{"q": "x"}'}}]}))
        finish = "tool_calls"
    else:
        words = REPLY_TEXT.format(tag=tag).split(" ")
        yield _sse(_openai_chunk(model, {"content": words[0]}))
        if scenario == "die-after-first-token":
            await asyncio.sleep(0.05)
            yield _sse({"error": {"message": "overloaded", "type": "server_error", "code": "server_error"}})
            return
        for word in words[1:]:
            yield _sse(_openai_chunk(model, {"content": " " + word}))
        finish = "stop"
    yield _sse(_openai_chunk(model, {}, finish))
    usage_chunk = _openai_chunk(model, {})
    usage_chunk["choices"] = []
    usage_chunk["usage"] = _openai_usage()
    yield _sse(usage_chunk)
    yield _sse("[DONE]")


async def _held(turn: Turn, request: Request) -> None:
    """Wait for the turn's ``hold`` (a thread's event) without blocking the server's loop."""
    if turn.hold is None:
        return
    deadline = time.monotonic() + HANG_LIMIT_S
    while not turn.hold.is_set() and time.monotonic() < deadline and not await request.is_disconnected():
        await asyncio.sleep(0.01)


def _openai_scripted(seen: SeenRequest, turn: Turn) -> Response:
    model = str(seen.body.get("model", "fake"))
    calls = [
        {
            "id": turn.call_id(seen.turn, i),
            "type": "function",
            "function": {"name": name, "arguments": args if isinstance(args, str) else json.dumps(args)},
        }
        for i, (name, args) in enumerate(turn.tool_calls)
    ]
    usage = {
        "prompt_tokens": turn.input_tokens,
        "completion_tokens": turn.output_tokens,
        "total_tokens": turn.input_tokens + turn.output_tokens,
    }
    finish = "tool_calls" if calls else "stop"
    if not seen.body.get("stream"):
        message: dict[str, Any] = {"role": "assistant", "content": turn.text or None}
        if calls:
            message["tool_calls"] = calls
        return JSONResponse(
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": 1_700_000_000,
                "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                "usage": usage,
            }
        )

    async def stream() -> AsyncIterator[bytes]:
        yield _sse(_openai_chunk(model, {"role": "assistant", "content": ""}))
        words = turn.text.split(" ") if turn.text else []
        for i, word in enumerate(words):
            yield _sse(_openai_chunk(model, {"content": word if i == 0 else " " + word}))
        for i, call in enumerate(calls):
            head = {"index": i, "id": call["id"], "type": "function", "function": {"name": call["function"]["name"]}}
            head["function"]["arguments"] = ""
            yield _sse(_openai_chunk(model, {"tool_calls": [head]}))
            args = {"index": i, "function": {"arguments": call["function"]["arguments"]}}
            yield _sse(_openai_chunk(model, {"tool_calls": [args]}))
        yield _sse(_openai_chunk(model, {}, finish))
        usage_chunk = _openai_chunk(model, {})
        usage_chunk["choices"] = []
        usage_chunk["usage"] = usage
        yield _sse(usage_chunk)
        yield _sse("[DONE]")

    return StreamingResponse(stream(), media_type="text/event-stream")


async def openai_chat(request: Request) -> Response:
    tag, scenario = request.path_params["tag"], request.path_params["scenario"]
    body = await request.json()
    server: FakeProviderServer = request.app.state.server
    seen = SeenRequest(tag, scenario, "openai", body)
    server.log.append(seen)
    if scenario in server.scripts:
        turn = server.turn_for(seen)
        await _held(turn, request)
        if turn.status is not None:
            return _openai_error(turn.status)
        return _openai_scripted(seen, turn)
    if scenario.startswith("status-"):
        return _openai_error(int(scenario.removeprefix("status-")))
    if scenario == "hang":
        return await _hang(request)
    if scenario == "malformed":
        return Response(b'{"id": "chatcmpl-fake", "choices": [', media_type="application/json")
    model = str(body.get("model", "fake"))
    if body.get("stream"):
        return StreamingResponse(_openai_stream(tag, scenario, model), media_type="text/event-stream")
    message = _openai_message(tag, scenario)
    return JSONResponse(
        {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": model,
            "choices": [
                {"index": 0, "message": message, "finish_reason": "tool_calls" if scenario == "tool" else "stop"}
            ],
            "usage": _openai_usage(),
        }
    )


# --- Anthropic messages ------------------------------------------------------------------------------------------


def _anthropic_error(status: int) -> JSONResponse:
    kinds = {
        400: "invalid_request_error",
        401: "authentication_error",
        404: "not_found_error",
        429: "rate_limit_error",
        529: "overloaded_error",
    }
    kind = kinds.get(status, "api_error")
    return JSONResponse({"type": "error", "error": {"type": kind, "message": f"fake {status}"}}, status_code=status)


def _anthropic_content(tag: str, scenario: str) -> list[dict[str, Any]]:
    if scenario == "tool":
        return [{"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"q": "x"}}]
    return [{"type": "text", "text": REPLY_TEXT.format(tag=tag)}]


async def _anthropic_stream(tag: str, scenario: str, model: str) -> AsyncIterator[bytes]:
    start = {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": 1},
    }
    yield _sse({"type": "message_start", "message": start}, "message_start")
    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    if scenario == "error-before-first-token":
        yield _sse(overloaded, "error")
        return
    if scenario == "tool":
        block = {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {}}
        yield _sse({"type": "content_block_start", "index": 0, "content_block": block}, "content_block_start")
        delta = {"type": "input_json_delta", "partial_json": '{"q": "x"}'}
        yield _sse({"type": "content_block_delta", "index": 0, "delta": delta}, "content_block_delta")
        stop_reason = "tool_use"
    else:
        block = {"type": "text", "text": ""}
        yield _sse({"type": "content_block_start", "index": 0, "content_block": block}, "content_block_start")
        words = REPLY_TEXT.format(tag=tag).split(" ")
        for i, word in enumerate(words):
            delta = {"type": "text_delta", "text": word if i == 0 else " " + word}
            yield _sse({"type": "content_block_delta", "index": 0, "delta": delta}, "content_block_delta")
            if scenario == "die-after-first-token":
                await asyncio.sleep(0.05)
                yield _sse(overloaded, "error")
                return
        stop_reason = "end_turn"
    yield _sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
    message_delta = {
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": None},
        "usage": {"output_tokens": OUTPUT_TOKENS},
    }
    yield _sse(message_delta, "message_delta")
    yield _sse({"type": "message_stop"}, "message_stop")


def _anthropic_scripted(seen: SeenRequest, turn: Turn) -> Response:
    model = str(seen.body.get("model", "fake"))
    blocks: list[dict[str, Any]] = [{"type": "text", "text": turn.text}] if turn.text else []
    for i, (name, args) in enumerate(turn.tool_calls):
        call = {"type": "tool_use", "id": turn.call_id(seen.turn, i), "name": name}
        blocks.append(call | {"input": args if isinstance(args, dict) else {}, "raw": args})
    stop_reason = "tool_use" if turn.tool_calls else "end_turn"

    async def stream() -> AsyncIterator[bytes]:
        start = {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": turn.input_tokens, "output_tokens": 1},
        }
        yield _sse({"type": "message_start", "message": start}, "message_start")
        for index, block in enumerate(blocks):
            if block["type"] == "text":
                opened = {"type": "text", "text": ""}
                delta = {"type": "text_delta", "text": block["text"]}
            else:
                opened = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
                raw = block["raw"]
                delta = {"type": "input_json_delta", "partial_json": raw if isinstance(raw, str) else json.dumps(raw)}
            yield _sse({"type": "content_block_start", "index": index, "content_block": opened}, "content_block_start")
            yield _sse({"type": "content_block_delta", "index": index, "delta": delta}, "content_block_delta")
            yield _sse({"type": "content_block_stop", "index": index}, "content_block_stop")
        message_delta = {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": {"output_tokens": turn.output_tokens},
        }
        yield _sse(message_delta, "message_delta")
        yield _sse({"type": "message_stop"}, "message_stop")

    return StreamingResponse(stream(), media_type="text/event-stream")


async def anthropic_messages(request: Request) -> Response:
    tag, scenario = request.path_params["tag"], request.path_params["scenario"]
    body = await request.json()
    server: FakeProviderServer = request.app.state.server
    seen = SeenRequest(tag, scenario, "anthropic", body)
    server.log.append(seen)
    if scenario in server.scripts:
        turn = server.turn_for(seen)
        await _held(turn, request)
        if turn.status is not None:
            return _anthropic_error(turn.status)
        return _anthropic_scripted(seen, turn)
    if scenario.startswith("status-"):
        return _anthropic_error(int(scenario.removeprefix("status-")))
    if scenario == "hang":
        return await _hang(request)
    if scenario == "malformed":
        # pydantic-ai's AnthropicModel always streams, so the malformed answer is an event whose data is not JSON.
        if body.get("stream"):
            return Response(
                b'event: message_start\ndata: {"type": "message_start", "message": {\n\n',
                media_type="text/event-stream",
            )
        return Response(b'{"id": "msg_fake", "content": [', media_type="application/json")
    model = str(body.get("model", "fake"))
    if body.get("stream"):
        return StreamingResponse(_anthropic_stream(tag, scenario, model), media_type="text/event-stream")
    return JSONResponse(
        {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": _anthropic_content(tag, scenario),
            "stop_reason": "tool_use" if scenario == "tool" else "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": OUTPUT_TOKENS},
        }
    )


def build_app(server: FakeProviderServer) -> Starlette:
    app = Starlette(
        routes=[
            Route("/{tag}/{scenario}/v1/chat/completions", openai_chat, methods=["POST"]),
            Route("/{tag}/{scenario}/v1/messages", anthropic_messages, methods=["POST"]),
        ]
    )
    app.state.server = server
    return app


class RunningServer:
    """Runs the fake server on its own event loop in a thread, so it outlives each test's loop."""

    def __init__(self) -> None:
        self.server = FakeProviderServer()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.server.port = sock.getsockname()[1]
        self._socket = sock
        config = uvicorn.Config(
            build_app(self.server), log_level="warning", lifespan="off", timeout_graceful_shutdown=1
        )
        self._uvicorn = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name="fake-llm-server", daemon=True)

    def _run(self) -> None:
        asyncio.run(self._uvicorn.serve(sockets=[self._socket]))

    def start(self) -> FakeProviderServer:
        self._thread.start()
        eventually_sync(
            lambda: self._uvicorn.started or not self._thread.is_alive(),
            timeout=10,
            interval=0.01,
            what="the fake provider server to start",
        )
        if not self._uvicorn.started:
            raise RuntimeError("fake provider server did not start")
        return self.server

    def stop(self) -> None:
        self._uvicorn.should_exit = True
        self._thread.join(timeout=10)
