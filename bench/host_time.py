"""python -m bench.host_time: the host's time per decoder step outside ONNX Runtime's `run`
(Python, feeds, bindings, copies, token selection), for today's step loop and for the
fixed-shape form (decoding/fixed_greedy.py), on a compute-free model: one layer of each, d_model
16, random weights, so what is left besides the kernels is the loop around them. On a GPU that
loop is what a step costs; a CPU shows it too, only under more arithmetic."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from decoding.batching import SearchOptions, fixed_greedy_batches, search_batches
from decoding.fixed_greedy import FixedShapeGreedy
from decoding.onnx_decoder import OnnxSeq2Seq
from decoding.runtime import RuntimeConfig, create_session
from export.graphs import build_fixed_step, build_graphs
from nmt_spec import ModelSpec, TransformerConfig
from nmt_spec.weights import fill, weight_specs

COMPUTE_FREE = TransformerConfig(vocab_size=64, d_model=16, n_heads=2, n_encoder_layers=1, n_decoder_layers=1, d_ff=32, max_positions=256)


class TimedSession:
    """An InferenceSession that counts its runs and the seconds spent in them."""

    def __init__(self, session: ort.InferenceSession) -> None:
        self.session = session
        self.runs = 0
        self.seconds = 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.session, name)

    def _timed(self, call, *args, **kwargs):
        began = time.perf_counter()
        try:
            return call(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - began
            self.runs += 1

    def run(self, *args, **kwargs):
        return self._timed(self.session.run, *args, **kwargs)

    def run_with_iobinding(self, *args, **kwargs):
        return self._timed(self.session.run_with_iobinding, *args, **kwargs)


@dataclass
class HostTime:
    form: str
    steps: int
    seconds: float  # the whole translation
    in_run: float  # of which inside ONNX Runtime's run (encoder and steps)
    outputs: list[list[int]]

    @property
    def host_per_step(self) -> float:
        return (self.seconds - self.in_run) / self.steps

    @property
    def run_per_step(self) -> float:
        return self.in_run / self.steps


def compute_free_model(directory: Path, seed: int = 0) -> tuple[ModelSpec, dict[str, Path]]:
    """The three graphs of a random compute-free Transformer, written to directory."""
    spec = ModelSpec("transformer", COMPUTE_FREE)
    rng = np.random.default_rng(seed)
    weights = fill(spec, {w.name: (rng.standard_normal(w.shape) * 0.5).astype(np.float32) for w in weight_specs(spec) if not w.tied_to}, "random")
    encoder, decoder = build_graphs(spec, weights)
    paths = {"encoder": directory / "encoder.onnx", "decoder": directory / "decoder.onnx", "fixed": directory / "fixed.onnx"}
    for name, graph in (("encoder", encoder), ("decoder", decoder), ("fixed", build_fixed_step(spec, weights))):
        onnx.save(graph, paths[name])
    return spec, paths


def measure(spec: ModelSpec, paths: dict[str, Path], form: str, sources: list[list[int]], batch_size: int, threads: int) -> HostTime:
    runtime = RuntimeConfig(device="cpu", intra_op_threads=threads)
    encoder = TimedSession(create_session(str(paths["encoder"]), runtime))
    step = TimedSession(create_session(str(paths["fixed" if form == "fixed" else "decoder"]), runtime))
    options = SearchOptions(max_decoding_length=spec.max_target_length)
    special = spec.special_ids

    # made once: the warm-up allocates and binds the fixed form's buffers, the timed run reuses them
    engine = FixedShapeGreedy.for_model(encoder, step, spec)  # type: ignore[arg-type]
    model = OnnxSeq2Seq(encoder, step, pad_id=special.pad)  # type: ignore[arg-type]

    def translate() -> list[list[int]]:
        if form == "fixed":
            nbest = fixed_greedy_batches(sources, engine, options, max_batch_tokens=10**9, max_batch_size=batch_size)
        else:
            nbest = search_batches(sources, model.start, special, options, max_batch_tokens=10**9, max_batch_size=batch_size)
        return [hypotheses[0].tokens for hypotheses in nbest]

    translate()  # warm-up: buffers, first runs
    encoder.seconds = step.seconds = 0.0
    encoder.runs = step.runs = 0
    began = time.perf_counter()
    outputs = translate()
    seconds = time.perf_counter() - began
    return HostTime(form, step.runs, seconds, encoder.seconds + step.seconds, outputs)


def random_sources(spec: ModelSpec, count: int, seed: int = 1) -> list[list[int]]:
    """Sources of 5 to 25 tokens of the ordinary vocabulary, each ending in eos."""
    rng = np.random.default_rng(seed)
    first = max(spec.special_ids.__dict__.values()) + 1
    return [rng.integers(first, spec.config.vocab_size, int(rng.integers(5, 26))).tolist() + [spec.special_ids.eos] for _ in range(count)]


def compare(sentences: int = 512, batch_size: int = 64, threads: int = 1, rounds: int = 3) -> tuple[HostTime, HostTime]:
    """Today's loop and the fixed-shape form on the same sources, the best of `rounds` each."""
    with tempfile.TemporaryDirectory() as directory:
        spec, paths = compute_free_model(Path(directory))
        sources = random_sources(spec, sentences)
        best: dict[str, HostTime] = {}
        for _ in range(rounds):
            for form in ("step loop", "fixed"):
                measured = measure(spec, paths, form, sources, batch_size, threads)
                if form not in best or measured.host_per_step < best[form].host_per_step:
                    best[form] = measured
    return best["step loop"], best["fixed"]


def table(today: HostTime, fixed: HostTime) -> str:
    same = sum(a == b for a, b in zip(today.outputs, fixed.outputs))
    lines = [
        "| decoding form | steps | host time per step, outside run | run per step | same greedy output as the step loop |",
        "|---|---:|---:|---:|---:|",
    ]
    for measured in (today, fixed):
        lines.append(f"| {measured.form} | {measured.steps} | {1e6 * measured.host_per_step:.1f} us | {1e6 * measured.run_per_step:.1f} us | {same / len(today.outputs):.1%} |")
    lines.append(f"\nHost time per step, step loop / fixed-shape form: {today.host_per_step / fixed.host_per_step:.1f}x")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.host_time", description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--sentences", type=int, default=512, help="random sources of 5 to 25 tokens")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads per operation")
    parser.add_argument("--rounds", type=int, default=3, help="each form measured this many times, alternating; the best is reported")
    args = parser.parse_args(argv)
    print(table(*compare(args.sentences, args.batch_size, args.threads, args.rounds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
