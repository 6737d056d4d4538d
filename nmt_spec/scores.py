"""Corpus BLEU and chrF with sacreBLEU's defaults, for training's validation and export's checks
(sacrebleu is not a serving dependency: nmt_spec/__init__ does not import this)."""

from __future__ import annotations

from dataclasses import dataclass

import sacrebleu


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
