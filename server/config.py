"""Every server setting, its default and its help text, written once: the command-line flags
(--max-batch-size) and environment variables (NMT_MAX_BATCH_SIZE) are derived from it."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Literal, get_args

ENV_PREFIX = "NMT_"
Device = Literal["auto", "cpu", "cuda"]
Variant = Literal["auto", "fp32", "int8", "fp16"]
BatchingPolicy = Literal["inflight", "dynamic"]
FixedStep = Literal["auto", "on", "off"]


def setting(default: object, help: str, choices: tuple[str, ...] | None = None) -> object:
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass(frozen=True)
class ServerConfig:
    model_repository: str = setting("models", "model repository root: <name>/<version>/manifest.json")
    models: str = setting("", "comma-separated model names to serve; empty: every model in the repository")
    skip_broken_models: int = setting(0, "1: a model that fails to load is logged and left out while the others serve; 0: the server refuses to start")
    poll_seconds: float = setting(10.0, "how often the repository is checked for a new version of a served model, loaded and switched to without dropping requests; 0: never")
    default_model: str = setting("transformer-en-de", "model used when a request names none; empty: the first served model")
    # Loopback by default: listening beyond this machine is a choice (the container image makes it
    # with NMT_HOST=0.0.0.0), and then TLS (below) or a mesh should protect the traffic.
    host: str = setting("127.0.0.1", "address the gRPC server (and the metrics endpoint) bind; 0.0.0.0 for every interface")
    port: int = setting(50051, "gRPC port")
    tls_cert_file: str = setting("", "PEM certificate chain: with --tls-key-file, gRPC is served over TLS only")
    tls_key_file: str = setting("", "PEM private key of --tls-cert-file")
    tls_client_ca_file: str = setting("", "PEM CA bundle: clients must present a certificate it signed (mutual TLS)")
    metrics_port: int = setting(9100, "Prometheus /metrics HTTP port; 0 disables it")
    http_port: int = setting(8080, "HTTP/JSON API port (GET /v1/models, POST /v1/translate; TLS as for gRPC); 0 disables it")
    device: Device = setting("auto", "ONNX Runtime execution provider: auto picks CUDA when a GPU is present", get_args(Device))
    variant: Variant = setting("auto", "graph precision; auto: fp16 on CUDA (when the model has it); on a CPU the manifest's cpu_default_variant: int8 (per-row activation scales, batch-invariant) where the export measured it faster than fp32, else fp32. fp32 or int8 here serve that variant of every model", get_args(Variant))
    allow_batch_dependent_variants: int = setting(0, "1: serve a variant whose manifest says batch_invariant false (int8 exported before per-row activation scales), whose answers may depend on the requests batched with them; 0: refuse to load it")
    intra_op_threads: int = setting(0, "ONNX Runtime threads per session; 0: one per physical core")
    decode_workers: int = setting(1, "threads decoding separate batches of each model from its one queue; with --intra-op-threads 1, one worker per core decodes more sentences per second under load than one batch split over every core, a lone request less")
    spin_wait: int = setting(0, "1: ONNX Runtime threads spin while idle (lower latency on a dedicated machine); 0: they sleep, leaving the cores to gRPC and batching")
    # dynamic by default: under load it gives the Transformer more sentences/s (on 2 CPU cores,
    # 256 clients: inflight 0.67-0.89x), since every join costs an encoder call for a few
    # sentences (docs/PERFORMANCE.md).
    batching: BatchingPolicy = setting(
        "dynamic",
        "dynamic: a batch is formed (up to max_queue_delay), decoded to the end, then the next; inflight: queued sentences join the running batch between decoder steps",
        get_args(BatchingPolicy),
    )
    fixed_step: FixedStep = setting(
        "auto",
        "plain greedy requests decoded on the variant's fixed-shape decoder step (caches written in place, search in the graph, CUDA graphs on a GPU): whole batches under dynamic batching, rows joining and leaving by slot under inflight; auto: on CUDA where the variant has one, on: wherever it has one (a CPU too), off: never",
        get_args(FixedStep),
    )
    max_batch_size: int = setting(64, "decoder rows in a batch (a sentence decoded with beam k takes k rows)")
    max_batch_tokens: int = setting(6144, "rows x longest source (in tokens) of a batch")
    max_queue_delay_microseconds: int = setting(2000, "dynamic policy: how long a batch waits to fill before it starts")
    preparation_workers: int = setting(2, "threads that prepare large requests (segmenting, tokenizing) and assemble large answers, off the event loop; small ones are done on it")
    max_queue_size: int = setting(2048, "queued sentences per model; beyond it requests get RESOURCE_EXHAUSTED")
    max_texts_per_request: int = setting(128, "texts in one request")
    max_request_tokens: int = setting(8192, "source tokens of one request, counted after its texts are split into sentences (a 2,000-token document fits)")
    # Checked on the raw request before any work: a tokenizer piece covers at most 16 characters
    # (SentencePiece's default max_sentencepiece_length), real text about 4-5.
    max_characters_per_token: int = setting(16, "characters of a request per token of --max-request-tokens (and of a text per token of the model's input, with split_sentences false); longer requests are refused before they are read further")
    max_beam_size: int = setting(8, "largest beam_size a request may ask for")
    # A request's own options win over these, these over the model's manifest.
    default_beam_size: int = setting(0, "beam_size of requests that set none, for every model (1: greedy, for speed); 0: each model's own (its manifest's decoding.beam_size)")
    default_length_penalty: float = setting(-1.0, "length_penalty of requests that set none, for every model; negative: each model's own (its manifest's)")
    attention_layer: int = setting(0, "Transformer decoder layer (from 1) whose cross-attention, averaged over heads, return_attention gives; 0: the layer each model's manifest names")
    max_receive_message_bytes: int = setting(4 * 1024 * 1024, "largest request message gRPC accepts")
    max_concurrent_streams: int = setting(1024, "concurrent calls per client connection (HTTP/2 streams); more wait in the client")
    drain_seconds: float = setting(20.0, "on SIGTERM/SIGINT: how long accepted requests get to finish before the process exits")
    log_level: str = setting("INFO", "logging level", ("DEBUG", "INFO", "WARNING", "ERROR"))

    @property
    def model_names(self) -> list[str]:
        return [name.strip() for name in self.models.split(",") if name.strip()]


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def build_parser(environ: Mapping[str, str] = os.environ) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m server",
        description="Serve the models of a model repository over gRPC (nmt.v1.Translator, health, reflection) "
        "with dynamic or in-flight batching on ONNX Runtime, and Prometheus metrics over HTTP. "
        f"Every flag can also be set by an environment variable: {env_name('max_batch_size')} for {flag_name('max_batch_size')}.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    for option in fields(ServerConfig):
        assert option.default is not MISSING
        kind = type(option.default)
        default = kind(environ[env_name(option.name)]) if env_name(option.name) in environ else option.default
        parser.add_argument(
            flag_name(option.name),
            type=kind,
            default=default,
            choices=option.metadata["choices"],
            help=f"{option.metadata['help']} (env {env_name(option.name)})",
        )
    return parser


# Settings that count things the server must have at least one of.
AT_LEAST_ONE = ("decode_workers", "preparation_workers", "max_characters_per_token", "max_batch_size", "max_batch_tokens", "max_queue_size", "max_texts_per_request", "max_request_tokens", "max_beam_size")


def parse_config(argv: list[str] | None = None, environ: Mapping[str, str] = os.environ) -> ServerConfig:
    parser = build_parser(environ)
    config = ServerConfig(**vars(parser.parse_args(argv)))
    for name in AT_LEAST_ONE:
        if getattr(config, name) < 1:
            parser.error(f"{flag_name(name)} (env {env_name(name)}) must be at least 1, got {getattr(config, name)}")
    if not 0 <= config.default_beam_size <= config.max_beam_size:
        parser.error(f"{flag_name('default_beam_size')} must be between 0 (each model's own) and {flag_name('max_beam_size')} ({config.max_beam_size}), got {config.default_beam_size}")
    return config
