from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nmt_spec import ModelSpec, RNNConfig, SpecialIds, TransformerConfig
from training.models import Seq2SeqModel, build_model

# Tests measure behaviour, not speed: one thread keeps them predictable on a shared 2-core box.
torch.set_num_threads(1)

VOCAB = 50
SPECIAL = SpecialIds()

MODEL_SPECS = {
    "transformer-pre": ModelSpec("transformer", TransformerConfig(vocab_size=VOCAB, d_model=32, n_heads=4, n_encoder_layers=2, n_decoder_layers=2, d_ff=64, dropout=0.0)),
    "transformer-post-learned": ModelSpec("transformer", TransformerConfig(vocab_size=VOCAB, d_model=32, n_heads=2, n_encoder_layers=1, n_decoder_layers=2, d_ff=64, dropout=0.0, norm="post", positional="learned", tie_embeddings=False)),
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


PARALLEL_PAIRS = [
    ("A man is riding a bike.", "Ein Mann fährt Fahrrad."),
    ("Two dogs play in the snow.", "Zwei Hunde spielen im Schnee."),
    ("A girl is reading a book.", "Ein Mädchen liest ein Buch."),
    ("The boy jumps into the water.", "Der Junge springt ins Wasser."),
    ("A woman is cooking dinner.", "Eine Frau kocht das Abendessen."),
    ("Three people walk down the street.", "Drei Leute gehen die Straße entlang."),
]


@pytest.fixture
def tiny_corpus(tmp_path: Path) -> Path:
    """A corpus directory of a handful of real sentence pairs: val holds them once, train 64
    times over, so an epoch is several steps and per-epoch work (validation, plots) stays rare."""
    directory = tmp_path / "corpus"
    directory.mkdir()
    for split, copies in (("train", 64), ("val", 1)):
        for side, language in ((0, "en"), (1, "de")):
            lines = [pair[side] for pair in PARALLEL_PAIRS] * copies
            (directory / f"{split}.{language}").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return directory
