"""Batched greedy and beam search over any Seq2SeqModel, using its incremental decoder step."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from nmt_spec import SpecialIds
from training.models.base import Seq2SeqModel, reorder


@dataclass
class Hypothesis:
    tokens: list[int]  # without bos and eos
    score: float  # sum of token log-probabilities, eos included when it was generated
    normalized_score: float  # score / length ** length_penalty, what beams are ranked by


def length_normalized(score: float, length: int, length_penalty: float) -> float:
    """CTranslate2's convention: divide by length**length_penalty (0 disables it)."""
    return score / (max(length, 1) ** length_penalty)


@torch.no_grad()
def greedy_search(model: Seq2SeqModel, src: Tensor, special: SpecialIds, max_length: int) -> list[Hypothesis]:
    """Argmax decoding of a padded source batch (B, S); finished sentences leave the batch."""
    batch = src.size(0)
    encoded = model.encode(src)
    state = model.init_state(encoded)
    active = torch.arange(batch, device=src.device)  # original row of each active sentence
    prev = torch.full((batch,), special.bos, dtype=torch.long, device=src.device)
    tokens: list[list[int]] = [[] for _ in range(batch)]
    scores = [0.0] * batch
    for step in range(max_length):
        logits, state = model.decode_step(prev, step, encoded, state)
        log_probs = torch.log_softmax(logits.float(), dim=-1)
        best_scores, best = log_probs.max(dim=-1)
        keep: list[int] = []
        for row, (sentence, token, token_score) in enumerate(
            zip(active.tolist(), best.tolist(), best_scores.tolist())
        ):
            scores[sentence] += token_score
            if token == special.eos:
                continue
            tokens[sentence].append(token)
            keep.append(row)
        if not keep:
            break
        if len(keep) < len(active):
            index = torch.tensor(keep, device=src.device)
            active, best = active[index], best[index]
            encoded, state = reorder(encoded, index), reorder(state, index)
        prev = best
    return [
        Hypothesis(t, s, s) for t, s in zip(tokens, scores)
    ]


@torch.no_grad()
def beam_search(
    model: Seq2SeqModel,
    src: Tensor,
    special: SpecialIds,
    max_length: int,
    beam_size: int = 4,
    length_penalty: float = 1.0,
    num_hypotheses: int = 1,
) -> list[list[Hypothesis]]:
    """Beam search for a padded source batch; returns num_hypotheses per sentence, best first.

    A sentence stops once beam_size hypotheses have ended with eos; hypotheses still open at
    max_length are finished as they are."""
    if not 1 <= num_hypotheses <= beam_size:
        raise ValueError(f"num_hypotheses must be between 1 and beam_size ({beam_size})")
    batch, device = src.size(0), src.device
    expand = torch.arange(batch, device=device).repeat_interleave(beam_size)
    encoded = reorder(model.encode(src), expand)
    state = model.init_state(encoded)
    beam_scores = torch.zeros(batch, beam_size, device=device)
    beam_scores[:, 1:] = float("-inf")  # all beams start identical: expand only the first
    beam_tokens: list[list[int]] = [[] for _ in range(batch * beam_size)]
    prev = torch.full((batch * beam_size,), special.bos, dtype=torch.long, device=device)
    finished: list[list[Hypothesis]] = [[] for _ in range(batch)]
    done = [False] * batch

    for step in range(max_length):
        logits, state = model.decode_step(prev, step, encoded, state)
        log_probs = torch.log_softmax(logits.float(), dim=-1)
        vocab = log_probs.size(-1)
        candidates = (beam_scores.unsqueeze(-1) + log_probs.view(batch, beam_size, vocab)).view(batch, -1)
        # 2 x beam candidates guarantee beam_size that do not end, whatever the eos count.
        top_scores, top_ids = candidates.topk(2 * beam_size, dim=-1)
        next_rows: list[int] = []
        next_tokens: list[int] = []
        next_scores: list[float] = []
        for sentence in range(batch):
            chosen = 0
            for rank, (score, flat) in enumerate(zip(top_scores[sentence].tolist(), top_ids[sentence].tolist())):
                if done[sentence] or chosen == beam_size:
                    break
                row = sentence * beam_size + flat // vocab
                token = flat % vocab
                if token == special.eos:
                    if rank < beam_size:
                        hypothesis = beam_tokens[row]
                        finished[sentence].append(
                            Hypothesis(list(hypothesis), score, length_normalized(score, len(hypothesis) + 1, length_penalty))
                        )
                    continue
                next_rows.append(row)
                next_tokens.append(token)
                next_scores.append(score)
                chosen += 1
            if len(finished[sentence]) >= beam_size:
                done[sentence] = True
            # Keep the tensor layout fixed (batch x beam): pad rows of finished sentences.
            while chosen < beam_size:
                next_rows.append(sentence * beam_size)
                next_tokens.append(special.eos)
                next_scores.append(float("-inf"))
                chosen += 1
        if all(done):
            break
        rows = torch.tensor(next_rows, device=device)
        beam_tokens = [beam_tokens[r] + [t] for r, t in zip(next_rows, next_tokens)]
        beam_scores = torch.tensor(next_scores, device=device).view(batch, beam_size)
        encoded, state = reorder(encoded, rows), reorder(state, rows)
        prev = torch.tensor(next_tokens, device=device)

    results: list[list[Hypothesis]] = []
    for sentence in range(batch):
        hypotheses = finished[sentence]
        if not done[sentence]:  # max_length reached: open beams count as they are
            for beam in range(beam_size):
                score = float(beam_scores[sentence, beam])
                if score != float("-inf"):
                    tokens = beam_tokens[sentence * beam_size + beam]
                    hypotheses.append(Hypothesis(list(tokens), score, length_normalized(score, len(tokens), length_penalty)))
        hypotheses.sort(key=lambda h: h.normalized_score, reverse=True)
        results.append(hypotheses[:num_hypotheses])
    return results
