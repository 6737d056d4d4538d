"""The decoding a model ships with: beam size and length penalty chosen by BLEU on validation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

from decoding.translator import Translator
from nmt_spec.scores import score


@dataclass(frozen=True)
class DecodingTrial:
    beam_size: int
    length_penalty: float
    bleu: float


def decoding_trials(
    translator: Translator, sources: list[str], references: list[str], beam_sizes: tuple[int, ...], length_penalties: tuple[float, ...], progress: Callable[[str], None]
) -> list[DecodingTrial]:
    """BLEU of every beam size x length penalty (greedy once: a length penalty does not change it)."""
    trials = []
    for beam_size in beam_sizes:
        for length_penalty in length_penalties if beam_size > 1 else (1.0,):
            translations = translator.translate(sources, translator.default_options(beam_size=beam_size, length_penalty=length_penalty))
            trials.append(DecodingTrial(beam_size, length_penalty, round(score(translations, references).bleu, 2)))
            progress(f"      beam {beam_size}, length penalty {length_penalty}: BLEU {trials[-1].bleu}")
    return trials


def best_trial(trials: list[DecodingTrial]) -> DecodingTrial:
    """The highest BLEU; on a tie the smaller beam (faster), then the penalty nearest 1."""
    return max(trials, key=lambda t: (t.bleu, -t.beam_size, -abs(t.length_penalty - 1.0)))


def trials_report(trials: list[DecodingTrial], split: str) -> dict:
    chosen = best_trial(trials)
    return {"split": split, "trials": [asdict(t) for t in trials], "chosen": {"beam_size": chosen.beam_size, "length_penalty": chosen.length_penalty}}
