"""PyTorch translation models behind one incremental-decoding interface (see ``base``)."""

from nmt_spec import ModelSpec, RNNConfig, TransformerConfig
from training.models.base import Seq2SeqModel
from training.models.rnn import AttentionRNN
from training.models.transformer import Transformer


def build_model(spec: ModelSpec) -> Seq2SeqModel:
    """The untrained model a spec describes."""
    if isinstance(spec.config, TransformerConfig):
        return Transformer(spec.config, spec.special_ids.pad)
    if isinstance(spec.config, RNNConfig):
        return AttentionRNN(spec.config, spec.special_ids.pad)
    raise TypeError(f"no model for {type(spec.config).__name__}")


__all__ = ["AttentionRNN", "Seq2SeqModel", "Transformer", "build_model"]
