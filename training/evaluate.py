"""Translation of raw sentences with a PyTorch model, and sacreBLEU/chrF scoring."""

from __future__ import annotations

from dataclasses import dataclass

import sacrebleu
import torch

from nmt_spec import ModelSpec, Tokenizer
from training.data import pad, token_batches
from training.models import Seq2SeqModel
from training.search import beam_search, greedy_search


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
) -> list[str]:
    """Translate raw sentences, batched by length; beam_size 1 is greedy search."""
    model.eval()
    sources = [ids[: spec.max_source_length] for ids in tokenizer.encode_batch(texts)]
    max_decoding_length = spec.max_target_length
    # Batches are sized for the decoder: beams multiply the rows, outputs may be longer.
    lengths = [(len(s) * beam_size, len(s) * beam_size) for s in sources]
    outputs: list[list[int]] = [[] for _ in texts]
    for indices in token_batches(lengths, max_batch_tokens, seed=None):
        src = pad([sources[i] for i in indices], spec.special_ids.pad).to(device)
        if beam_size == 1:
            best = greedy_search(model, src, spec.special_ids, max_decoding_length)
        else:
            best = [
                nbest[0]
                for nbest in beam_search(
                    model, src, spec.special_ids, max_decoding_length, beam_size, length_penalty
                )
            ]
        for index, hypothesis in zip(indices, best):
            outputs[index] = hypothesis.tokens
    return tokenizer.decode_batch(outputs)
