"""A small client for the Translator service, and its command line:

    python -m server.client --target localhost:50051 "A man is riding a bike."
    cat sentences.txt | python -m server.client --target localhost:50051
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from nmt.v1 import translator_pb2 as pb
from nmt.v1 import translator_pb2_grpc

SERVICE = "nmt.v1.Translator"
# Lines from stdin go out in requests of this many texts, so a long file streams through.
STDIN_CHUNK = 32
STATUS_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}


class TranslatorClient:
    def __init__(self, target: str, timeout: float | None = 30.0, credentials: grpc.ChannelCredentials | None = None) -> None:
        self.channel = grpc.secure_channel(target, credentials) if credentials else grpc.insecure_channel(target)
        self.stub = translator_pb2_grpc.TranslatorStub(self.channel)
        self.timeout = timeout

    def translate(self, texts: list[str], model: str = "", options: pb.DecodingOptions | None = None, split_sentences: bool | None = None) -> pb.TranslateResponse:
        """split_sentences None: the server's default (split)."""
        request = pb.TranslateRequest(model=model, texts=texts, options=options, split_sentences=split_sentences)
        return self.stub.Translate(request, timeout=self.timeout)

    def translate_stream(
        self, chunks: Iterable[list[str]], model: str = "", options: pb.DecodingOptions | None = None, split_sentences: bool | None = None
    ) -> Iterator[pb.TranslateResponse]:
        """One response per chunk, in order; a chunk the server refused has `error` set."""
        requests = (pb.TranslateRequest(model=model, texts=texts, options=options, split_sentences=split_sentences) for texts in chunks)
        return self.stub.TranslateStream(requests)

    def serving(self, timeout: float | None = None, wait_for_ready: bool = False) -> bool:
        """Whether the health service reports SERVING (models loaded and warmed up)."""
        health = health_pb2_grpc.HealthStub(self.channel)
        request = health_pb2.HealthCheckRequest(service=SERVICE)
        status = health.Check(request, timeout=self.timeout if timeout is None else timeout, wait_for_ready=wait_for_ready).status
        return status == health_pb2.HealthCheckResponse.SERVING

    def wait_until_serving(self, seconds: float) -> None:
        """Block until the server is SERVING."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                if self.serving(timeout=max(0.1, deadline - time.monotonic()), wait_for_ready=True):
                    return
            except grpc.RpcError as error:
                if error.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                    raise
            if time.monotonic() >= deadline:
                raise TimeoutError(f"the server was not SERVING within {seconds:.0f} s")
            time.sleep(0.1)

    def list_models(self) -> pb.ListModelsResponse:
        return self.stub.ListModels(pb.ListModelsRequest(), timeout=self.timeout)

    def close(self) -> None:
        self.channel.close()


def channel_credentials(ca: Path | None, certificate: Path | None, key: Path | None) -> grpc.ChannelCredentials | None:
    if ca is None and certificate is None:
        return None
    return grpc.ssl_channel_credentials(
        root_certificates=ca.read_bytes() if ca else None,
        private_key=key.read_bytes() if key else None,
        certificate_chain=certificate.read_bytes() if certificate else None,
    )


def _chunks(lines: Iterable[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for line in lines:
        if line.strip():
            chunk.append(line.rstrip("\n"))
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m server.client", description="Translate sentences with a running translation server.")
    parser.add_argument("texts", nargs="*", help="sentences to translate; none: read one per line from stdin")
    parser.add_argument("--target", default="localhost:50051", help="server address (default: %(default)s)")
    parser.add_argument("--model", default="", help="model name; empty: the server's default")
    parser.add_argument("--beam-size", type=int, default=None, help="beam size (default: the server's, greedy)")
    parser.add_argument("--n-best", type=int, default=None, help="hypotheses per sentence, printed tab-separated with their scores")
    parser.add_argument("--max-decoding-length", type=int, default=None, help="target tokens per sentence (default: the model's bound for each source)")
    parser.add_argument("--min-decoding-length", type=int, default=None, help="no end of sentence before this many tokens (default: 0)")
    parser.add_argument("--repetition-penalty", type=float, default=None, help="above 1, tokens already generated are less likely (default: 1, off)")
    parser.add_argument("--no-repeat-ngram-size", type=int, default=None, help="no n-gram of this size twice in a translation (default: 0, off)")
    parser.add_argument("--no-split", action="store_true", help="send each text as one segment: the server does not split it into sentences")
    parser.add_argument("--attention-png", type=Path, metavar="FILE", help="ask for the attention and draw the first text's as a heatmap into FILE (needs matplotlib)")
    parser.add_argument("--timeout", type=float, default=30.0, help="deadline per request in seconds (default: %(default)s)")
    parser.add_argument("--wait", type=float, default=0.0, metavar="SECONDS", help="first wait up to this long for the server to be SERVING")
    parser.add_argument("--tls-ca", type=Path, help="PEM CA that signed the server's certificate: connect over TLS")
    parser.add_argument("--tls-cert", type=Path, help="PEM client certificate, for servers that require one (mutual TLS)")
    parser.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    parser.add_argument("--health", action="store_true", help="exit 0 if the server is SERVING, 1 otherwise (a container health check)")
    parser.add_argument("--list-models", action="store_true", help="print the served models and exit")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    client = TranslatorClient(args.target, args.timeout, channel_credentials(args.tls_ca, args.tls_cert, args.tls_key))
    options = pb.DecodingOptions(
        beam_size=args.beam_size,
        num_hypotheses=args.n_best,
        return_scores=args.n_best is not None,
        max_decoding_length=args.max_decoding_length,
        min_decoding_length=args.min_decoding_length,
        repetition_penalty=args.repetition_penalty,
        no_repeat_ngram_size=args.no_repeat_ngram_size,
        return_attention=args.attention_png is not None,
    )
    split = False if args.no_split else None
    failed = False
    try:
        if args.health:
            return 0 if client.serving() else 1
        if args.wait:
            client.wait_until_serving(args.wait)
        if args.list_models:
            for model in client.list_models().models:
                default = " (default)" if model.is_default else ""
                print(f"{model.name}{default}\tversions {','.join(model.versions)}\t{model.source_language}->{model.target_language}\t{model.architecture}\t{model.variant}{'' if model.batch_invariant else ' (batch-dependent)'}")
            return 0
        responses = [client.translate(args.texts, args.model, options, split)] if args.texts else client.translate_stream(_chunks(sys.stdin, STDIN_CHUNK), args.model, options, split)
        drawn = args.attention_png is None
        for number, response in enumerate(responses):
            if not drawn and response.translations:
                from server.attention_png import draw_attention  # matplotlib only when drawing: the server image has none

                draw_attention(response.translations[0], args.attention_png)
                print(f"wrote {args.attention_png}", file=sys.stderr)
                drawn = True
            if response.HasField("error"):
                failed = True
                code = STATUS_NAMES.get(response.error.code, str(response.error.code))
                print(f"error: request {number + 1} of the stream ({STDIN_CHUNK} lines each): {code}: {response.error.message}", file=sys.stderr)
            for translation in response.translations:
                if translation.hypotheses:
                    print("\t".join(f"{h.text}\t{h.score:.4f}" for h in translation.hypotheses))
                else:
                    print(translation.text)
    except grpc.RpcError as error:
        print(f"error: {error.code().name}: {error.details()}", file=sys.stderr)
        return 1
    except TimeoutError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        client.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
