"""The model spec: architecture hyper-parameters, special ids and limits, as plain JSON."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

SPEC_FORMAT_VERSION = 1
TOKENIZER_FILE = "tokenizer.model"  # beside the spec, in run directories and model versions


@dataclass(frozen=True)
class SpecialIds:
    """Token ids the tokenizer reserves; the models and decoders rely on them."""

    pad: int = 0
    unk: int = 1
    bos: int = 2
    eos: int = 3


@dataclass
class TransformerConfig:
    """Encoder-decoder Transformer (Vaswani et al., 2017)."""

    vocab_size: int = 8000
    d_model: int = 256
    n_heads: int = 4
    n_encoder_layers: int = 3
    n_decoder_layers: int = 3
    d_ff: int = 1024  # hidden width of the position-wise feed-forward
    dropout: float = 0.1
    attention_dropout: float = 0.0
    activation: Literal["relu", "gelu", "swish"] = "relu"  # swish (SiLU): Marian's
    # Learned positions cannot extrapolate past max_positions; sinusoidal ones can.
    # sinusoidal: sin and cos interleaved (Vaswani et al.); sinusoidal_split: all sines, then all
    # cosines (Marian's and fairseq's layout).
    positional: Literal["sinusoidal", "learned", "sinusoidal_split"] = "sinusoidal"
    max_positions: int = 256
    norm: Literal["pre", "post"] = "pre"  # where LayerNorm sits around each residual sublayer
    # One matrix for source embeddings, target embeddings and the output projection; valid
    # because the tokenizer is joint over both languages.
    tie_embeddings: bool = True
    scale_embeddings: bool = True  # token embeddings times sqrt(d_model)
    output_bias: bool = False  # a bias on the output logits (Marian's final_logits_bias)


@dataclass
class RNNConfig:
    """Attention RNN (Luong et al., 2015: global attention, no input feeding)."""

    vocab_size: int = 8000
    embed_dim: int = 256
    hidden_size: int = 512
    encoder_layers: int = 2
    decoder_layers: int = 2
    cell: Literal["gru", "lstm"] = "gru"
    bidirectional: bool = True
    attention: Literal["dot", "general"] = "dot"
    dropout: float = 0.3
    tie_embeddings: bool = True


ARCHITECTURES: dict[str, type[TransformerConfig] | type[RNNConfig]] = {
    "transformer": TransformerConfig,
    "rnn": RNNConfig,
}


def _from_known_fields(cls: type, values: dict[str, Any], where: str) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {unknown}; known: {sorted(names)}")
    return cls(**values)


@dataclass
class ModelSpec:
    """Everything needed to rebuild and run a trained model, except its weights."""

    architecture: Literal["transformer", "rnn"]
    config: TransformerConfig | RNNConfig
    tokenizer_file: str = TOKENIZER_FILE  # relative to the spec's directory; the source side's, when the next two are set
    # A model with a SentencePiece model per side and one vocabulary over both (Marian's): the
    # target side's SentencePiece model and the vocabulary (piece -> id, JSON).
    target_tokenizer_file: str = ""
    vocabulary_file: str = ""
    special_ids: SpecialIds = field(default_factory=SpecialIds)
    max_source_length: int = 128  # in subword tokens, eos included
    max_target_length: int = 128
    source_language: str = "en"
    target_language: str = "de"

    def __post_init__(self) -> None:
        expected = ARCHITECTURES.get(self.architecture)
        if expected is None:
            raise ValueError(
                f"unknown architecture {self.architecture!r}; choose one of {sorted(ARCHITECTURES)}"
            )
        if not isinstance(self.config, expected):
            raise TypeError(f"{self.architecture} needs a {expected.__name__}")

    def to_dict(self) -> dict[str, Any]:
        return {"format_version": SPEC_FORMAT_VERSION, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelSpec:
        values = dict(values)
        version = values.pop("format_version", SPEC_FORMAT_VERSION)
        if version != SPEC_FORMAT_VERSION:
            raise ValueError(f"model spec format {version} is not supported (want {SPEC_FORMAT_VERSION})")
        architecture = values.get("architecture")
        if architecture not in ARCHITECTURES:
            raise ValueError(
                f"unknown architecture {architecture!r}; choose one of {sorted(ARCHITECTURES)}"
            )
        values["config"] = _from_known_fields(
            ARCHITECTURES[architecture], values.get("config", {}), "model spec config"
        )
        values["special_ids"] = _from_known_fields(
            SpecialIds, values.get("special_ids", {}), "model spec special_ids"
        )
        return _from_known_fields(cls, values, "model spec")

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> ModelSpec:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
