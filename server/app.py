"""Server wiring: gRPC server with the Translator, health and reflection services, the metrics
endpoint, model loading, and shutdown on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from nmt.v1 import translator_pb2, translator_pb2_grpc
from server.config import ServerConfig, parse_config
from server.lifecycle import Lifecycle
from server.metrics import ServerMetrics
from server.models import ModelRegistry
from server.service import TranslatorService

log = logging.getLogger("server")

SERVICE_NAME = translator_pb2.DESCRIPTOR.services_by_name["Translator"].full_name  # nmt.v1.Translator
OVERALL = ""  # the health service's name for the server as a whole


async def set_health(health_service: health.aio.HealthServicer, status: int) -> None:
    for name in (OVERALL, SERVICE_NAME):
        await health_service.set(name, status)


def grpc_options(config: ServerConfig) -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", config.max_receive_message_bytes),
        ("grpc.max_send_message_length", 4 * config.max_receive_message_bytes),
    ]


async def serve(config: ServerConfig) -> int:
    """Runs until SIGTERM/SIGINT; returns the exit status."""
    metrics = ServerMetrics()
    lifecycle = Lifecycle()
    server = grpc.aio.server(options=grpc_options(config))
    translator_pb2_grpc.add_TranslatorServicer_to_server(TranslatorService(lifecycle, config, metrics), server)
    health_service = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_service, server)
    await set_health(health_service, health_pb2.HealthCheckResponse.NOT_SERVING)
    reflection.enable_server_reflection([SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME], server)
    port = server.add_insecure_port(f"{config.host}:{config.port}")
    await server.start()
    if config.metrics_port:
        metrics.serve(config.metrics_port, config.host)
    log.info("gRPC listening on %s:%d, metrics on :%d/metrics; loading models from %s", config.host, port, config.metrics_port, config.model_repository)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    def load() -> ModelRegistry:
        registry = ModelRegistry.load(config, metrics)
        try:
            registry.warm_up()
        except BaseException:
            registry.stop()
            raise
        return registry

    loading = asyncio.ensure_future(asyncio.to_thread(load))
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait([loading, stopping], return_when=asyncio.FIRST_COMPLETED)
    if loading.done():
        if loading.exception() is not None:
            log.error("cannot serve: %s", loading.exception())
            await server.stop(grace=None)
            return 1
        lifecycle.registry = loading.result()
        for model in lifecycle.registry.models.values():
            if model.device == "CUDAExecutionProvider":
                metrics.watch_gpu_memory(int(model.translator.model.decoder.get_provider_options()[model.device]["device_id"]))
                break
        metrics.models_loaded.set(1)
        await set_health(health_service, health_pb2.HealthCheckResponse.SERVING)
        log.info("serving %s (default %s)", ", ".join(f"{m.name}/{m.version} [{m.variant}]" for m in lifecycle.registry.models.values()), lifecycle.registry.default_model)
        await stopping

    log.info("shutting down: NOT_SERVING, draining accepted requests for up to %.0f s", config.drain_seconds)
    await health_service.enter_graceful_shutdown()
    drained = await lifecycle.drain(config.drain_seconds)
    if not drained:
        log.warning("%d requests were still running after %.0f s; they are cancelled", lifecycle.active, config.drain_seconds)
    await server.stop(grace=1.0)
    if lifecycle.registry is not None:
        lifecycle.registry.stop()
    elif not loading.done():
        loading.cancel()
    log.info("stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    config = parse_config(argv)
    logging.basicConfig(level=config.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return asyncio.run(serve(config))
