"""Translation of raw sentences with a PyTorch model, and sacreBLEU/chrF scoring."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sacrebleu
import torch

from decoding.batching import SearchOptions, search_batches
from nmt_spec import ModelSpec, Tokenizer
from training.models import Seq2SeqModel
from training.search import TorchIncrementalDecoder


@dataclass
class Scores:
    bleu: float
    chrf: float
    bleu_signature: str

    def as_dict(self) -> dict[str, float | str]:
        return {"bleu": round(self.bleu, 2), "chrf": round(self.chrf, 2), "bleu_signature": self.bleu_signature}


def score(hypotheses: list[str], references: list[str]) -> Scores:
    """Detokenized, case-sensitive corpus BLEU and chrF (sacreBLEU defaults)."""
    bleu = sacrebleu.metrics.BLEU()
    chrf = sacrebleu.metrics.CHRF()
    return Scores(
        bleu=bleu.corpus_score(hypotheses, [references]).score,
        chrf=chrf.corpus_score(hypotheses, [references]).score,
        bleu_signature=str(bleu.get_signature()),
    )


@torch.no_grad()
def translate(
    model: Seq2SeqModel,
    tokenizer: Tokenizer,
    spec: ModelSpec,
    texts: list[str],
    beam_size: int = 1,
    length_penalty: float = 1.0,
    max_batch_tokens: int = 4000,
    device: str | torch.device = "cpu",
    max_batch_size: int | None = None,
) -> list[str]:
    """Translate raw sentences, batched by length; beam_size 1 is greedy search."""
    model.eval()
    sources = [ids[: spec.max_source_length] for ids in tokenizer.encode_batch(texts)]
    options = SearchOptions(beam_size=beam_size, length_penalty=length_penalty, max_decoding_length=spec.max_target_length)

    def start(batch: np.ndarray) -> TorchIncrementalDecoder:
        return TorchIncrementalDecoder(model, torch.from_numpy(batch).to(device))

    nbest = search_batches(sources, start, spec.special_ids, options, max_batch_tokens, max_batch_size)
    return tokenizer.decode_batch([hypotheses[0].tokens for hypotheses in nbest])
