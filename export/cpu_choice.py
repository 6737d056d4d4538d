"""The variant a CPU serves by default: int8 (activations quantized per row, so batch-invariant)
where it decodes faster than fp32, fp32 otherwise. Measured per model, because it differs by
model: on 2 cores the shipped RNN decodes 1.15x faster in int8, the width-128 Transformer 0.94x
(docs/BENCHMARKS.md, both with the server's default threads), where its per-row quantization
nodes, small elementwise kernels that gain little from a second thread, cost more than the
integer products save."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

from decoding.translator import Translator
from nmt_spec.manifest import Variant

# int8 must be at least this much faster to become the default: a smaller difference is within
# what one machine's speed drifts between rounds.
MARGIN = 1.05
ROUNDS = 5
SENTENCES = 500
BATCH_SIZE = 64  # sentences per batch, as the server's default --max-batch-size


@dataclass(frozen=True)
class CpuSpeed:
    sentences: int
    seconds: float  # greedy, the fastest of the rounds

    def as_dict(self) -> dict[str, float | int]:
        # intra_op_threads 0: ONNX Runtime's default, one per physical core, as the server's default
        return asdict(self) | {"intra_op_threads": 0, "batch_size": BATCH_SIZE}


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
