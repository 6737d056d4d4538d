"""The HTTP/JSON API beside gRPC: the same service on the same event loop and batcher, with
protobuf's JSON mapping for bodies (json_format), so a request or an answer reads as the gRPC
message does.

    GET  /v1/models        -> ListModelsResponse
    POST /v1/translate     TranslateRequest -> TranslateResponse
    GET  /                 a page to try a model and see its attention (server/web/index.html;
                           /?text=...&model=... translates on load)

A deadline is given as gRPC gives it, in a `grpc-timeout` header ("500m", "2S"). Errors are the
gRPC status mapped to an HTTP status, with a JSON body {"code": "INVALID_ARGUMENT", "message": ...};
a malformed body or an unknown field is 400. What aiohttp itself refuses (a path the API has not:
404, a method a path does not take: 405, a body over the receive limit: 413) has the same JSON
body."""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from pathlib import Path

import grpc
from aiohttp import web
from google.protobuf import json_format

from nmt.v1 import translator_pb2 as pb
from server.config import ServerConfig
from server.errors import RequestError
from server.off_loop import OffLoop
from server.service import UNARY, TranslatorService, status_of

HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.UNAVAILABLE: 503,
}
PAGE = Path(__file__).with_name("web") / "index.html"
TRANSLATE_METHOD = "POST /v1/translate"  # the method label of its requests in the metrics
GRPC_TIMEOUT = re.compile(r"(\d{1,8})([HMSmun])")
TIMEOUT_UNIT_SECONDS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}
# aiohttp's own refusals as gRPC would name them (a message over gRPC's receive limit is
# RESOURCE_EXHAUSTED); the HTTP status stays aiohttp's
REFUSAL_CODES = {404: grpc.StatusCode.NOT_FOUND, 405: grpc.StatusCode.UNIMPLEMENTED, 413: grpc.StatusCode.RESOURCE_EXHAUSTED}
ROUTES_HELP = "the API has GET /v1/models, POST /v1/translate and the page at GET /"


class Deadline:
    """The time left of an HTTP call (CallContext)."""

    def __init__(self, seconds: float | None) -> None:
        self.at = None if seconds is None else time.monotonic() + seconds

    def time_remaining(self) -> float | None:
        return None if self.at is None else max(0.0, self.at - time.monotonic())


def timeout_seconds(header: str | None) -> float | None:
    """A grpc-timeout header's seconds (None: none sent); ValueError for another form."""
    if header is None:
        return None
    match = GRPC_TIMEOUT.fullmatch(header.strip())
    if match is None:
        raise ValueError(f"grpc-timeout header {header!r}: write up to 8 digits and a unit, H M S m u n (milliseconds: 500m)")
    return int(match[1]) * TIMEOUT_UNIT_SECONDS[match[2]]


def error_response(code: grpc.StatusCode, message: str) -> web.Response:
    return web.json_response({"code": code.name, "message": message}, status=HTTP_STATUS.get(code, 500))


@web.middleware
async def json_refusals(request: web.Request, handler) -> web.StreamResponse:
    """aiohttp's refusals with the body every other error has, saying what to do instead."""
    try:
        return await handler(request)
    except web.HTTPException as refusal:
        if refusal.status < 400:
            raise
        code = REFUSAL_CODES.get(refusal.status, grpc.StatusCode.UNKNOWN)
        if isinstance(refusal, web.HTTPNotFound):
            message = f"no {request.path} here: {ROUTES_HELP}"
        elif isinstance(refusal, web.HTTPMethodNotAllowed):
            message = f"{request.path} takes {', '.join(sorted(refusal.allowed_methods))}, not {request.method}"
        else:
            message = refusal.text or refusal.reason
        headers = {"Allow": refusal.headers["Allow"]} if "Allow" in refusal.headers else None
        return web.json_response({"code": code.name, "message": message}, status=refusal.status, headers=headers)


def json_body(message) -> bytes:
    return json_format.MessageToJson(message, indent=None).encode()


class HttpApi:
    def __init__(self, service: TranslatorService, off_loop: OffLoop) -> None:
        self.service = service
        self.off_loop = off_loop
        self.page_html = PAGE.read_bytes()

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/", self.page), web.get("/v1/models", self.models), web.post("/v1/translate", self.translate)]

    async def page(self, request: web.Request) -> web.Response:
        return web.Response(body=self.page_html, content_type="text/html", charset="utf-8")

    async def models(self, request: web.Request) -> web.Response:
        try:
            return web.Response(body=json_body(self.service.list_models()), content_type="application/json")
        except RequestError as error:
            return error_response(status_of(error), str(error))

    async def translate(self, request: web.Request) -> web.Response:
        try:
            seconds = timeout_seconds(request.headers.get("grpc-timeout"))
        except ValueError as error:
            return error_response(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        body = await request.read()
        try:
            message = await self.off_loop.run(len(body), lambda cancelled: json_format.Parse(body, pb.TranslateRequest()))
        except (json_format.ParseError, UnicodeDecodeError) as error:
            return error_response(grpc.StatusCode.INVALID_ARGUMENT, f"the body is not a TranslateRequest in protobuf's JSON mapping: {error}")
        try:
            async with asyncio.timeout(seconds):
                answer = await self.service.translate(message, Deadline(seconds), TRANSLATE_METHOD, UNARY)
        except TimeoutError:
            return error_response(grpc.StatusCode.DEADLINE_EXCEEDED, f"the deadline passed before the answer was ready; it was dropped (allow more than {seconds:.3f} s)")
        except RequestError as error:
            return error_response(status_of(error), str(error))
        payload = await self.off_loop.run(answer.ByteSize(), lambda cancelled: json_body(answer))
        return web.Response(body=payload, content_type="application/json")


def tls_context(config: ServerConfig) -> ssl.SSLContext | None:
    """The gRPC port's TLS for the HTTP port too: the same certificate, the same client CA."""
    if not (config.tls_cert_file and config.tls_key_file):
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(config.tls_cert_file, config.tls_key_file)
    if config.tls_client_ca_file:
        context.load_verify_locations(config.tls_client_ca_file)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


async def serve_http(api: HttpApi, config: ServerConfig) -> web.AppRunner:
    """The API on --http-port of the running event loop; a body over gRPC's receive limit is 413."""
    app = web.Application(client_max_size=config.max_receive_message_bytes, middlewares=[json_refusals])
    app.add_routes(api.routes())
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, config.host, config.http_port, ssl_context=tls_context(config)).start()
    return runner

