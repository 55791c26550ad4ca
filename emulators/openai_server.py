"""A local stand-in for the OpenAI Chat Completions API.

OpenAI is not reachable from development and CI machines, so the real `openai` SDK is
pointed at this server instead (`base_url=emulator.base_url`). It speaks the wire format
the SDK expects — including structured output (`response_format` of type `json_schema`,
as `client.chat.completions.parse(response_format=Model)` sends it), refusals and
OpenAI-shaped errors — and lets tests script what the "model" answers next.

Run it standalone with `python -m emulators.openai_server --port 8090`.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import itertools
import json
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel

from emulators.serving import LocalServer

__all__ = ["OpenAIEmulator", "RecordedRequest"]

DEFAULT_MODEL = "gpt-4o-mini"

_ERROR_KINDS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("invalid_request_error", "unsupported_country_region_territory", "Forbidden."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist."),
    408: ("timeout", None, "Request timed out."),
    409: ("conflict", None, "Conflict."),
    422: ("invalid_request_error", None, "Unprocessable request."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests."),
    500: ("server_error", None, "The server had an error while processing your request."),
    502: ("server_error", None, "Bad gateway."),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}


@dataclass
class RecordedRequest:
    """One request as the server received it, for assertions in tests (header names lowercased)."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None

    @property
    def model(self) -> str | None:
        return None if self.body is None else self.body.get("model")

    @property
    def messages(self) -> list[dict[str, Any]]:
        msgs = (self.body or {}).get("messages")
        return msgs if isinstance(msgs, list) else []

    @property
    def response_format(self) -> dict[str, Any] | None:
        return (self.body or {}).get("response_format")

    def contents(self, role: str) -> list[str]:
        """Text of every message with this role (content parts joined)."""
        return [_text_of(m.get("content")) for m in self.messages if m.get("role") == role]

    def content(self, role: str) -> str:
        """All text sent with this role, joined; "" when there is none."""
        return "\n".join(self.contents(role))


@dataclass
class _Scripted:
    kind: Literal["content", "refusal", "error", "hang", "garbage"]
    content: str | None = None
    refusal: str | None = None
    finish_reason: str = "stop"
    status: int = 200
    message: str | None = None
    retry_after: float | None = None
    seconds: float = 0.0


class OpenAIEmulator(LocalServer):
    """OpenAI-compatible HTTP server with a script of upcoming answers.

    Each scripted behaviour is used by exactly one `POST /v1/chat/completions`; when the
    script is empty the server answers with a plausible plan for the lead in the request.
    """

    def __init__(self, api_key: str | None = None, models: Sequence[str] = (DEFAULT_MODEL,)):
        self.api_key = api_key
        self.models = tuple(models)
        self.requests: list[RecordedRequest] = []
        self._script: deque[_Scripted] = deque()
        self._base_url: str | None = None
        self._ids = itertools.count(1)

    # ---- lifecycle ----

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on host:port (0 picks a free port) and return the SDK base URL."""
        if self._runner is not None:
            return self.base_url
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat_completions)
        app.router.add_get("/v1/models", self._list_models)
        app.router.add_get("/v1/models/{model}", self._get_model)
        bound_host, bound_port = await self._listen(app, host, port, access_log=None)
        self._base_url = f"http://{bound_host}:{bound_port}/v1"
        return self._base_url

    @property
    def base_url(self) -> str:
        """`http://host:port/v1`, what `AsyncOpenAI(base_url=...)` wants."""
        if self._base_url is None:
            raise RuntimeError("the emulator is not running; call start() first")
        return self._base_url

    # ---- scripting ----

    def reply_with_plan(
        self, steps: Iterable[Mapping[str, Any] | BaseModel], *, times: int = 1
    ) -> None:
        """Answer the next request(s) with `{"steps": [...]}` as JSON content."""
        dumped = [s.model_dump(mode="json") if isinstance(s, BaseModel) else dict(s) for s in steps]
        content = json.dumps({"steps": dumped}, ensure_ascii=False)
        self._push(_Scripted("content", content=content), times)

    def reply_raw(self, content: str, *, finish_reason: str = "stop", times: int = 1) -> None:
        """Answer with this exact content (malformed JSON, prose, a truncated answer…)."""
        self._push(_Scripted("content", content=content, finish_reason=finish_reason), times)

    def refuse(self, text: str = "I'm sorry, I can't help with that.", *, times: int = 1) -> None:
        """Answer like a safety refusal: `content` null, `refusal` set."""
        self._push(_Scripted("refusal", refusal=text), times)

    def fail(
        self,
        status: int = 500,
        count: int = 1,
        *,
        message: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        """Fail the next `count` requests with an OpenAI-format error body.

        `retry_after` (seconds) is sent as `retry-after-ms`/`retry-after`, which the SDK obeys.
        """
        self._push(
            _Scripted("error", status=status, message=message, retry_after=retry_after), count
        )

    def hang(self, seconds: float = 3600.0, count: int = 1) -> None:
        """Hold the next `count` requests `seconds` before answering (a stuck endpoint)."""
        self._push(_Scripted("hang", seconds=seconds), count)

    def garbage(self, count: int = 1) -> None:
        """Answer the next `count` requests 200 with a body that is not JSON at all (a proxy's
        error page, a misconfigured base URL)."""
        self._push(_Scripted("garbage"), count)

    def reset(self) -> None:
        """Forget recorded requests and any unused script."""
        self.requests.clear()
        self._script.clear()

    @property
    def pending(self) -> int:
        """Scripted answers not used yet."""
        return len(self._script)

    @property
    def completions(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def _push(self, item: _Scripted, times: int) -> None:
        if times < 1:
            raise ValueError("times/count must be at least 1")
        self._script.extend(item for _ in range(times))

    # ---- handlers ----

    def _authorized(self, request: web.Request) -> bool:
        if not self.api_key:
            return True
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode(), self.api_key.encode()
        )

    async def _record(self, request: web.Request) -> RecordedRequest:
        body: dict[str, Any] | None = None
        if request.can_read_body:
            try:
                parsed = json.loads(await request.read())
            except (ValueError, UnicodeDecodeError):
                parsed = None
            body = parsed if isinstance(parsed, dict) else None
        headers = {k.lower(): v for k, v in request.headers.items()}
        rec = RecordedRequest(request.method, request.path, headers, body)
        self.requests.append(rec)
        return rec

    async def _list_models(self, request: web.Request) -> web.Response:
        await self._record(request)
        if not self._authorized(request):
            return _error(401)
        data = [_model_object(m) for m in self.models]
        return web.json_response({"object": "list", "data": data})

    async def _get_model(self, request: web.Request) -> web.Response:
        await self._record(request)
        if not self._authorized(request):
            return _error(401)
        name = request.match_info["model"]
        if name not in self.models:
            return _error(404, f"The model `{name}` does not exist.", param="model")
        return web.json_response(_model_object(name))

    async def _chat_completions(self, request: web.Request) -> web.Response:
        rec = await self._record(request)
        if not self._authorized(request):
            return _error(401)
        body = rec.body
        if body is None:
            return _error(400, "We could not parse the JSON body of your request.")
        problem = _invalid_request(body)
        if problem:
            return _error(400, problem[0], param=problem[1])
        scripted = self._script.popleft() if self._script else None
        if scripted is not None and scripted.kind == "error":
            return _error(scripted.status, scripted.message, retry_after=scripted.retry_after)
        if scripted is not None and scripted.kind == "hang":
            await asyncio.sleep(scripted.seconds)
            scripted = None
        if scripted is not None and scripted.kind == "garbage":
            return web.Response(
                text="<html><body>502 upstream gone</body></html>", content_type="text/html"
            )
        if scripted is None:
            scripted = _Scripted("content", content=_default_plan(rec))
        return web.json_response(self._completion(body, scripted))

    def _completion(self, body: Mapping[str, Any], scripted: _Scripted) -> dict[str, Any]:
        content = scripted.content if scripted.kind == "content" else None
        prompt_tokens = sum(len(_text_of(m.get("content")).split()) for m in body["messages"])
        completion_tokens = len((content or scripted.refusal or "").split())
        return {
            "id": f"chatcmpl-emu{next(self._ids):06d}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": content,
                        "refusal": scripted.refusal,
                        "annotations": [],
                    },
                    "logprobs": None,
                    "finish_reason": scripted.finish_reason,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
            "service_tier": "default",
            "system_fingerprint": "fp_leadpilot_emulator",
        }


# ---- helpers ----


def _text_of(content: object) -> str:
    """Message content is a string or a list of parts; tests only care about the text."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(p.get("text", ""))
            for p in content
            if isinstance(p, dict) and p.get("type") == "text"
        )
    return ""


def _model_object(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "leadpilot-emulator"}


def _invalid_request(body: Mapping[str, Any]) -> tuple[str, str | None] | None:
    """The checks OpenAI itself would answer with 400, so client bugs show up locally."""
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "you must provide a model parameter", "model"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty array", "messages"
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in {
            "system",
            "developer",
            "user",
            "assistant",
            "tool",
            "function",
        }:
            return f"Invalid value for 'messages[{i}].role'", f"messages[{i}].role"
    if body.get("stream"):
        return "streaming is not supported by the leadpilot emulator", "stream"
    rf = body.get("response_format")
    if rf is not None:
        if not isinstance(rf, dict) or rf.get("type") not in {"text", "json_object", "json_schema"}:
            return "Invalid value for 'response_format.type'", "response_format.type"
        if rf["type"] == "json_schema":
            spec = rf.get("json_schema")
            if not isinstance(spec, dict) or not spec.get("name"):
                return "Missing required parameter: 'response_format.json_schema.name'", (
                    "response_format.json_schema.name"
                )
            if not isinstance(spec.get("schema"), dict):
                return "Invalid schema for response_format", "response_format.json_schema.schema"
    return None


def _error(
    status: int,
    message: str | None = None,
    *,
    param: str | None = None,
    retry_after: float | None = None,
) -> web.Response:
    default_type = "server_error" if status >= 500 else "invalid_request_error"
    err_type, code, default_message = _ERROR_KINDS.get(status, (default_type, None, "Error."))
    headers = {"x-request-id": f"req_emu_{status}"}
    if retry_after is not None:
        headers["retry-after-ms"] = str(int(retry_after * 1000))
        headers["retry-after"] = str(max(0, round(retry_after)))
    payload = {
        "error": {
            "message": message or default_message,
            "type": err_type,
            "param": param,
            "code": code,
        }
    }
    return web.json_response(payload, status=status, headers=headers)


def _lead_from(rec: RecordedRequest) -> dict[str, Any]:
    """The first JSON object in the user message: how leadpilot passes the lead."""
    text = rec.content("user")
    decoder = json.JSONDecoder()
    start = text.find("{")
    while start != -1:
        try:
            obj, _ = decoder.raw_decode(text, start)
        except ValueError:
            start = text.find("{", start + 1)
            continue
        if isinstance(obj, dict):
            return obj
        start = text.find("{", start + 1)
    return {}


def _default_plan(rec: RecordedRequest) -> str:
    """A valid, recognisably "model-made" plan so happy-path tests need no scripting."""
    lead = _lead_from(rec)
    name = " ".join(str(lead.get("prospect_name") or "").split())[:60]
    company = " ".join(str(lead.get("prospect_company") or "").split())[:60] or "your company"
    first = name.split(" ")[0] if name else "there"
    rows = [
        ("email", 0, "Intro email", f"Hi {first}, a quick idea for {company}: ..."),
        ("linkedin", 3, "Connect on LinkedIn", f"Hi {first}, great to connect."),
        ("email", 7, "Share a relevant insight", f"Hi {first}, thought this might help {company}."),
        ("call", 10, "Call to discuss priorities", f"Ask {first} about {company}'s priorities."),
        ("email", 14, "Send a customer story", f"Hi {first}, here is how a similar team did it."),
        ("email", 24, "Breakup email", f"Hi {first}, I'll close the loop for now."),
    ]
    steps = [
        {
            "step_id": i,
            "action_type": action,
            "description": f"{desc} (emulated model)",
            "suggested_text": text,
            "timing": f"Day {delay}",
            "delay_days": delay,
        }
        for i, (action, delay, desc, text) in enumerate(rows, 1)
    ]
    return json.dumps({"steps": steps}, ensure_ascii=False)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Local OpenAI Chat Completions emulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--api-key", default=None, help="require this Bearer key")
    args = parser.parse_args(argv)

    async def serve() -> None:
        emulator = OpenAIEmulator(api_key=args.api_key)
        print(f"OpenAI emulator at {await emulator.start(args.host, args.port)}", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await emulator.stop()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
