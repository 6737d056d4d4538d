"""The variant a CPU serves by default: int8 (activations quantized per row, so batch-invariant)
where it decodes faster than fp32, fp32 otherwise. Measured per model, because it differs by
model: on 2 cores the shipped RNN decodes 1.15x faster in int8, the width-128 Transformer 0.94x
(docs/BENCHMARKS.md, both with the server's default threads), where its per-row quantization
nodes, small elementwise kernels that gain little from a second thread, cost more than the
integer products save."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from decoding.onnx_decoder import OnnxSeq2Seq
from decoding.runtime import RuntimeConfig, create_session
from decoding.translator import Translator
from export.graphs import DECODER_FILE, ENCODER_FILE
from export.variants import VARIANTS
from nmt_spec import ModelSpec, Tokenizer
from nmt_spec.tokenizer import VocabularyTokenizer
from nmt_spec.manifest import Variant

# int8 must be at least this much faster to become the default: a smaller difference is within
# what one machine's speed drifts between rounds.
MARGIN = 1.05
ROUNDS = 5
SENTENCES = 500
BATCH_SIZE = 64  # sentences per batch, as the server's default --max-batch-size
# the sessions as the server starts them by default: one batch over every core
SERVER_DEFAULT = RuntimeConfig(device="cpu")


@dataclass(frozen=True)
class CpuSpeed:
    sentences: int
    seconds: float  # greedy, the fastest of the rounds

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self) | {"intra_op_threads": SERVER_DEFAULT.intra_op_threads, "batch_size": BATCH_SIZE}


def measure_cpu_speed(translators: dict[str, Translator], sources: list[str], rounds: int = ROUNDS) -> dict[str, CpuSpeed]:
    """Greedy decoding of `sources` by each translator, with the sessions' threads as the server
    starts them by default (one batch over every core). Rounds alternate between the translators
    and the fastest of each is kept, so the machine's drift weighs on both alike."""
    fastest = {name: math.inf for name in translators}
    for _ in range(rounds):
        for name, translator in translators.items():
            began = time.perf_counter()
            translator.translate(sources)
            fastest[name] = min(fastest[name], time.perf_counter() - began)
    return {name: CpuSpeed(len(sources), round(seconds, 4)) for name, seconds in fastest.items()}


def cpu_default_variant(speeds: dict[str, CpuSpeed], variants: dict[str, Variant]) -> str:
    """int8 where it is batch-invariant and measured at least MARGIN faster than fp32; else fp32."""
    int8, fp32 = speeds.get("int8"), speeds.get("fp32")
    if int8 is None or fp32 is None or not variants["int8"].batch_invariant:
        return "fp32"
    return "int8" if int8.seconds * MARGIN <= fp32.seconds else "fp32"


def choose_cpu_variant(
    staging: Path, spec: ModelSpec, tokenizer: Tokenizer | VocabularyTokenizer, variants: dict[str, Variant], sources: list[str], progress: Callable[[str], None]
) -> tuple[str, dict]:
    """The staged fp32 and int8 graphs timed on `sources` (their first SENTENCES): each variant's
    cpu_speed filled in, and the CPU default with what it was chosen from. fp32 where either
    variant is missing or there is nothing to time."""
    if not {"fp32", "int8"} <= set(variants) or not sources:
        return "fp32", {}
    sources = sources[:SENTENCES]
    progress(f"[4/4] fp32 against int8 on the CPU, greedy, {len(sources)} sentences, {ROUNDS} rounds")
    translators = {
        name: Translator(
            OnnxSeq2Seq(*(create_session(str(staging / pattern.format(suffix=VARIANTS[name].file_suffix)), SERVER_DEFAULT) for pattern in (ENCODER_FILE, DECODER_FILE))),
            spec,
            tokenizer,
            max_batch_size=BATCH_SIZE,
        )
        for name in ("fp32", "int8")
    }
    speeds = measure_cpu_speed(translators, sources)
    for name, speed in speeds.items():
        variants[name].cpu_speed = speed.as_dict()
    chosen = cpu_default_variant(speeds, variants)
    progress(f"      seconds: fp32 {speeds['fp32'].seconds}, int8 {speeds['int8'].seconds}: {chosen} is the CPU default")
    return chosen, {name: speed.as_dict() for name, speed in speeds.items()} | {"chosen": chosen}
