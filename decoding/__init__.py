"""Batched greedy and beam search over incremental decoders, with numpy only.

One search implementation serves the PyTorch models (training/evaluation) and the ONNX graphs
(export checks and the server), so their outputs can differ only by arithmetic."""

from decoding.search import (
    BeamSearch,
    GreedySearch,
    Hypothesis,
    IncrementalDecoder,
    RunningBatch,
    beam_search,
    greedy_search,
)

__all__ = ["BeamSearch", "GreedySearch", "Hypothesis", "IncrementalDecoder", "RunningBatch", "beam_search", "greedy_search"]
