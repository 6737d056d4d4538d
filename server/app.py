"""Server wiring: gRPC server with the Translator, health and reflection services, the metrics
endpoint, model loading, and shutdown on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from nmt.v1 import translator_pb2, translator_pb2_grpc
from nmt_spec.manifest import ManifestError
from server.config import ServerConfig, parse_config
from server.http_api import HttpApi, serve_http
from server.lifecycle import Lifecycle
from server.metrics import ServerMetrics
from server.models import ModelRegistry, load_and_warm_up
from server.off_loop import OffLoop
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
        ("grpc.max_concurrent_streams", config.max_concurrent_streams),
    ]


async def watch_repository(lifecycle: Lifecycle, config: ServerConfig, metrics: ServerMetrics) -> None:
    """Hot reload: a new version directory is loaded and warmed up beside the old version, then
    takes the new requests; the old one answers what it holds and is let go."""
    root = Path(config.model_repository)
    broken: set[Path] = set()
    registry = lifecycle.registry
    assert registry is not None
    while True:
        await asyncio.sleep(config.poll_seconds)
        for name, directory in registry.newer_versions(root, broken).items():
            try:
                new = await asyncio.to_thread(load_and_warm_up, directory, config, metrics)
            except (ManifestError, OSError) as error:
                broken.add(directory)
                log.error("model %s: version %s is not served: %s", name, directory.name, error)
                continue
            old = registry.replace(new)
            log.info("model %s: version %s serves new requests; version %s finishes its own", name, new.version, old.version)
            await asyncio.to_thread(old.batcher.close)
            metrics.model_info.remove(old.name, old.version, old.variant, old.manifest.spec.architecture, old.device)


def add_port(server: grpc.aio.Server, config: ServerConfig) -> int:
    address = f"{config.host}:{config.port}"
    if not (config.tls_cert_file or config.tls_key_file):
        if config.tls_client_ca_file:
            raise ValueError("--tls-client-ca-file needs --tls-cert-file and --tls-key-file")
        return server.add_insecure_port(address)
    if not (config.tls_cert_file and config.tls_key_file):
        raise ValueError("TLS needs both --tls-cert-file and --tls-key-file")
    certificate_chain, private_key = Path(config.tls_cert_file).read_bytes(), Path(config.tls_key_file).read_bytes()
    client_ca = Path(config.tls_client_ca_file).read_bytes() if config.tls_client_ca_file else None
    credentials = grpc.ssl_server_credentials([(private_key, certificate_chain)], root_certificates=client_ca, require_client_auth=client_ca is not None)
    log.info("TLS on %s%s", address, " with client certificates required" if client_ca else "")
    return server.add_secure_port(address, credentials)


async def serve(config: ServerConfig) -> int:
    """Runs until SIGTERM/SIGINT; returns the exit status."""
    metrics = ServerMetrics()
    lifecycle = Lifecycle()
    server = grpc.aio.server(options=grpc_options(config))
    off_loop = OffLoop(config.preparation_workers)
    service = TranslatorService(lifecycle, config, metrics, off_loop)
    translator_pb2_grpc.add_TranslatorServicer_to_server(service, server)
    health_service = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_service, server)
    await set_health(health_service, health_pb2.HealthCheckResponse.NOT_SERVING)
    reflection.enable_server_reflection([SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME], server)
    port = add_port(server, config)
    await server.start()
    http_servers = [await metrics.serve(config.metrics_port, config.host)] if config.metrics_port else []
    if config.http_port:
        http_servers.append(await serve_http(HttpApi(service, off_loop), config))
    log.info(
        "gRPC listening on %s:%d, HTTP/JSON on :%d, metrics on :%d/metrics; loading models from %s",
        config.host, port, config.http_port, config.metrics_port, config.model_repository,
    )  # fmt: skip
    try:
        return await serve_until_stopped(config, server, health_service, lifecycle, metrics)
    finally:
        for http_server in http_servers:
            await http_server.cleanup()
        off_loop.close()


async def serve_until_stopped(
    config: ServerConfig, server: grpc.aio.Server, health_service: health.aio.HealthServicer, lifecycle: Lifecycle, metrics: ServerMetrics
) -> int:
    """Loads the models, serves until SIGTERM/SIGINT, drains; returns the exit status."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    loading = asyncio.ensure_future(asyncio.to_thread(ModelRegistry.load, config, metrics))
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait([loading, stopping], return_when=asyncio.FIRST_COMPLETED)
    if loading.done():
        if loading.exception() is not None:
            log.error("cannot serve: %s", loading.exception())
            await server.stop(grace=None)
            return 1
        lifecycle.registry = loading.result()
        gpus = [model.gpu_device_id for model in lifecycle.registry.models.values() if model.gpu_device_id is not None]
        if gpus:
            metrics.watch_gpu_memory(gpus[0])
        metrics.models_loaded.set(1)
        await set_health(health_service, health_pb2.HealthCheckResponse.SERVING)
        watcher = asyncio.ensure_future(watch_repository(lifecycle, config, metrics)) if config.poll_seconds > 0 else None
        log.info("serving %s (default %s)", ", ".join(f"{m.name}/{m.version} [{m.variant}]" for m in lifecycle.registry.models.values()), lifecycle.registry.default_model)
        await stopping
        if watcher is not None:
            watcher.cancel()

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
    try:
        return asyncio.run(serve(config))
    except (ValueError, OSError, RuntimeError) as error:  # TLS files, a port in use
        log.error("cannot serve: %s", error)
        return 1
