"""What a trained translation model is, readable without torch.

The one contract between training/, export/ and server/: the architecture config, the special
token ids, the maximum lengths and the tokenizer. Training writes it, export and serving read it.
"""

from nmt_spec.model_spec import (
    ARCHITECTURES,
    ModelSpec,
    RNNConfig,
    SpecialIds,
    TransformerConfig,
)
from nmt_spec.tokenizer import Tokenizer, train_tokenizer

__all__ = [
    "ARCHITECTURES",
    "ModelSpec",
    "RNNConfig",
    "SpecialIds",
    "TransformerConfig",
    "Tokenizer",
    "train_tokenizer",
]
