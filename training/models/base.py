"""The interface search, training and export share.

Every tensor in ``Encoded`` and ``DecoderState`` has the batch on dim 0, so beam search can
expand and reorder them without knowing the architecture, and export can name them as graph
inputs and outputs.
"""

from __future__ import annotations

from torch import Tensor, nn

Encoded = dict[str, Tensor]  # what the decoder reads from the source, e.g. memory and its mask
DecoderState = dict[str, Tensor]  # what a decoder step carries to the next, e.g. caches


class Seq2SeqModel(nn.Module):
    pad_id: int

    def encode(self, src: Tensor) -> Encoded:
        """src: (B, S) token ids, padded with pad_id."""
        raise NotImplementedError

    def init_state(self, encoded: Encoded) -> DecoderState:
        raise NotImplementedError

    def decode_step(
        self, prev_tokens: Tensor, step: int, encoded: Encoded, state: DecoderState
    ) -> tuple[Tensor, DecoderState]:
        """One decoder step. prev_tokens: (B,). Returns logits (B, V) and the next state."""
        raise NotImplementedError

    def decode_step_with_attention(
        self, prev_tokens: Tensor, step: int, encoded: Encoded, state: DecoderState
    ) -> tuple[Tensor, DecoderState, Tensor]:
        """Like decode_step, also returning this step's attention over the source: (B, layers,
        S), one distribution per decoder layer that attends to the source."""
        raise NotImplementedError

    def forward(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        """Teacher forcing: logits (B, T, V) for every target position at once."""
        raise NotImplementedError


def source_padding_mask(src: Tensor, pad_id: int) -> Tensor:
    """(B, S) bool, True where a real token is: the only positions attention may read."""
    return src.ne(pad_id)


def reorder(tensors: dict[str, Tensor], indices: Tensor) -> dict[str, Tensor]:
    return {name: value.index_select(0, indices) for name, value in tensors.items()}


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
