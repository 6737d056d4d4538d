from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nmt_spec import ModelSpec, RNNConfig, SpecialIds, TransformerConfig
from tests.tiny_runs import write_tiny_corpus
from training.models import Seq2SeqModel, build_model

# Tests measure behaviour, not speed: one thread keeps them predictable on a shared 2-core box.
torch.set_num_threads(1)

VOCAB = 50
SPECIAL = SpecialIds()

MODEL_SPECS = {
    "transformer-pre": ModelSpec("transformer", TransformerConfig(vocab_size=VOCAB, d_model=32, n_heads=4, n_encoder_layers=2, n_decoder_layers=2, d_ff=64, dropout=0.0)),
    "transformer-post-learned": ModelSpec("transformer", TransformerConfig(vocab_size=VOCAB, d_model=32, n_heads=2, n_encoder_layers=1, n_decoder_layers=2, d_ff=64, dropout=0.0, norm="post", positional="learned", activation="gelu", tie_embeddings=False)),
    "transformer-post-marian": ModelSpec("transformer", TransformerConfig(vocab_size=VOCAB, d_model=32, n_heads=4, n_encoder_layers=1, n_decoder_layers=2, d_ff=64, dropout=0.0, norm="post", positional="sinusoidal_split", activation="swish", output_bias=True, scale_embeddings=False)),
    "rnn-gru-dot": ModelSpec("rnn", RNNConfig(vocab_size=VOCAB, embed_dim=16, hidden_size=32, encoder_layers=2, decoder_layers=2, dropout=0.0)),
    "rnn-lstm-general": ModelSpec("rnn", RNNConfig(vocab_size=VOCAB, embed_dim=16, hidden_size=32, encoder_layers=1, decoder_layers=1, cell="lstm", attention="general", bidirectional=False, dropout=0.0, tie_embeddings=False)),
}


@pytest.fixture(params=sorted(MODEL_SPECS))
def model(request: pytest.FixtureRequest) -> Seq2SeqModel:
    torch.manual_seed(0)
    return build_model(MODEL_SPECS[request.param]).eval()


def random_tokens(batch: int, length: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(4, VOCAB, (batch, length), generator=generator)


@pytest.fixture
def tiny_corpus(tmp_path: Path) -> Path:
    return write_tiny_corpus(tmp_path / "corpus")
