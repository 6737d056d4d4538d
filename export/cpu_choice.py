"""The variant a CPU serves by default: int8 (activations quantized per row, so batch-invariant)
where it decodes faster than fp32, fp32 otherwise. Measured per model, because it differs by
model: on 2 cores the shipped RNN decodes 1.19x faster in int8, the width-128 Transformer 0.93x
(docs/BENCHMARKS.md), where its per-row quantization nodes cost more than the integer products save."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

from decoding.translator import Translator
from nmt_spec.manifest import Variant

# int8 must save at least this much CPU time to become the default: a smaller difference is
# within what one machine's speed drifts between rounds.
MARGIN = 1.05
ROUNDS = 3
SENTENCES = 500
BATCH_SIZE = 64  # sentences per batch, as the server's default --max-batch-size


@dataclass(frozen=True)
class CpuSpeed:
    sentences: int
    cpu_seconds: float  # greedy, one ONNX Runtime thread, the fastest of the rounds

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self) | {"threads": 1, "batch_size": BATCH_SIZE}


def measure_cpu_speed(translators: dict[str, Translator], sources: list[str], rounds: int = ROUNDS) -> dict[str, CpuSpeed]:
    """Greedy decoding of `sources` by each translator (sessions with one intra-op thread, whose
    kernels run on the calling thread, so this thread's CPU time is theirs). Rounds alternate
    between the translators and the fastest of each is kept: CPU time, not wall time, because
    other work on a shared machine stretches the wall clock far more."""
    fastest = {name: math.inf for name in translators}
    for _ in range(rounds):
        for name, translator in translators.items():
            began = time.thread_time()
            translator.translate(sources)
            fastest[name] = min(fastest[name], time.thread_time() - began)
    return {name: CpuSpeed(len(sources), round(seconds, 4)) for name, seconds in fastest.items()}


def cpu_default_variant(speeds: dict[str, CpuSpeed], variants: dict[str, Variant]) -> str:
    """int8 where it is batch-invariant and measured at least MARGIN faster than fp32; else fp32."""
    int8, fp32 = speeds.get("int8"), speeds.get("fp32")
    if int8 is None or fp32 is None or not variants["int8"].batch_invariant:
        return "fp32"
    return "int8" if int8.cpu_seconds * MARGIN <= fp32.cpu_seconds else "fp32"
