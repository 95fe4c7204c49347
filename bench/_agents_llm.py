"""The loopback model of ``bench/agents.py``: a small HTTP/1.1 server speaking OpenAI's chat-completions wire format,
in a process of its own (its CPU is then neither side's), answering at once.

It is stateless: the answer to a request is chosen from the conversation it carries, whose user prompt says
``steps=<n> id=<tag>``. ``POST /v1/chat/completions`` answers one call of the tool ``bench_noop`` while the
conversation holds fewer than ``<n>`` tool results, and the text ``done`` once it holds ``<n>``. Streamed
(``"stream": true``: server-sent events, the whole answer written at once) or not. ``GET /log`` returns (and
forgets) when each request arrived and was answered (``time.time()``, the clock the database's timestamps are taken
from), its conversation's tag and how many tool results it carried.

A hand-written server rather than uvicorn: it costs about a tenth of a millisecond per request, so the model's time
is as close to nothing as a real HTTP round trip through the real SDK allows.

    python -m bench._agents_llm        # prints "port <n>", serves until stdin closes
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from typing import Any

TOOL = "bench_noop"
USAGE = {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19}

log: list[dict[str, Any]] = []


PROMPT = re.compile(r"steps=(\d+) id=(\S+)")


def tool_results(body: dict[str, Any]) -> int:
    return sum(1 for message in body.get("messages", []) if message.get("role") == "tool")


def prompt_of(body: dict[str, Any]) -> tuple[int, str]:
    """``(steps, tag)`` from the conversation's user prompt; ``(0, "")`` (answer at once) without one."""
    for message in body.get("messages", []):
        if message.get("role") == "user":
            content = message.get("content")
            text = content if isinstance(content, str) else json.dumps(content)
            found = PROMPT.search(text)
            if found:
                return int(found.group(1)), found.group(2)
    return 0, ""


def answer(body: dict[str, Any]) -> tuple[str, bytes]:
    """The content type and body of the answer to ``body``."""
    done = tool_results(body)
    steps, _ = prompt_of(body)
    model = str(body.get("model", "bench-model"))
    call = None
    if done < steps:
        arguments = json.dumps({"q": f"item {done}"})
        call = {"id": f"call_{done}", "type": "function", "function": {"name": TOOL, "arguments": arguments}}
    finish = "tool_calls" if call else "stop"
    head = {"id": "chatcmpl-bench", "created": 1_700_000_000, "model": model}
    if not body.get("stream"):
        message: dict[str, Any] = {"role": "assistant", "content": None if call else "done"}
        if call:
            message["tool_calls"] = [call]
        choice = {"index": 0, "message": message, "finish_reason": finish}
        return "application/json", json.dumps(
            head | {"object": "chat.completion", "choices": [choice]} | {"usage": USAGE}
        ).encode()

    def chunk(delta: dict[str, Any] | None, finish_reason: str | None = None, **extra: Any) -> bytes:
        choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish_reason}]
        data = head | {"object": "chat.completion.chunk", "choices": choices} | extra
        return b"data: " + json.dumps(data).encode() + b"\n\n"

    parts = [chunk({"role": "assistant", "content": ""})]
    if call:
        opened = {"index": 0, "id": call["id"], "type": "function", "function": {"name": TOOL, "arguments": ""}}
        parts.append(chunk({"tool_calls": [opened]}))
        parts.append(chunk({"tool_calls": [{"index": 0, "function": {"arguments": call["function"]["arguments"]}}]}))
    else:
        parts.append(chunk({"content": "done"}))
    parts += [chunk({}, finish), chunk(None, usage=USAGE), b"data: [DONE]\n\n"]
    return "text/event-stream", b"".join(parts)


def response(status: int, content_type: str, body: bytes) -> bytes:
    reason = {200: "OK", 404: "Not Found", 400: "Bad Request"}.get(status, "Error")
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {len(body)}\r\n"
        "connection: keep-alive\r\n\r\n"
    )
    return head.encode() + body


async def serve_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
                return  # the client closed the connection, or this server stops
            arrived = time.time()
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            if method == "GET" and path == "/log":
                out = json.dumps(log).encode()
                log.clear()
                writer.write(response(200, "application/json", out))
            elif method == "POST" and path == "/v1/chat/completions":
                request = json.loads(body)
                content_type, out = answer(request)
                writer.write(response(200, content_type, out))
                answered, tag = time.time(), prompt_of(request)[1]
                log.append(
                    {"arrived": arrived, "answered": answered, "tag": tag, "tool_results": tool_results(request)}
                )
            else:
                writer.write(response(404, "application/json", b'{"error": {"message": "not found"}}'))
            await writer.drain()
    finally:
        writer.close()


async def main() -> None:
    server = await asyncio.start_server(serve_connection, "127.0.0.1", 0, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    print(f"port {port}", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # until the bench closes our stdin
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
