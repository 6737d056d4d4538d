"""Shapes, masks and incremental decoding of both architectures."""

from __future__ import annotations

import torch

from tests.training.conftest import SPECIAL, VOCAB, random_tokens
from training.models import AttentionRNN, Seq2SeqModel


def test_forward_gives_logits_for_every_target_position(model: Seq2SeqModel) -> None:
    src, tgt = random_tokens(3, 7), random_tokens(3, 5, seed=1)
    assert model(src, tgt).shape == (3, 5, VOCAB)


def test_padding_never_changes_the_output(model: Seq2SeqModel) -> None:
    """Extra padding on the source must not change a single logit: padding receives no attention."""
    src, tgt = random_tokens(2, 6), random_tokens(2, 4, seed=1)
    src[1, 4:] = SPECIAL.pad
    padded = torch.cat([src, torch.full((2, 5), SPECIAL.pad)], dim=1)
    torch.testing.assert_close(model(padded, tgt), model(src, tgt), rtol=0, atol=1e-5)


def test_changing_a_real_source_token_changes_the_output(model: Seq2SeqModel) -> None:
    """The counterpart of the padding test: the mask must not hide real tokens."""
    src, tgt = random_tokens(1, 8), random_tokens(1, 4, seed=1)
    changed = src.clone()
    changed[0, 2] = (src[0, 2] - 4 + 1) % (VOCAB - 4) + 4
    assert not torch.allclose(model(changed, tgt), model(src, tgt), atol=1e-4)


def test_decoder_cannot_see_the_future(model: Seq2SeqModel) -> None:
    src, tgt = random_tokens(2, 6), random_tokens(2, 7, seed=1)
    changed = tgt.clone()
    changed[:, 4] = (tgt[:, 4] - 4 + 1) % (VOCAB - 4) + 4
    before, after = model(src, tgt), model(src, changed)
    torch.testing.assert_close(after[:, :4], before[:, :4], rtol=0, atol=1e-5)
    assert not torch.allclose(after[:, 4:], before[:, 4:], atol=1e-4)


def test_incremental_decoding_equals_teacher_forcing(model: Seq2SeqModel) -> None:
    src, tgt = random_tokens(3, 6), random_tokens(3, 5, seed=1)
    src[2, 3:] = SPECIAL.pad
    full = model(src, tgt)
    encoded = model.encode(src)
    state = model.init_state(encoded)
    steps = []
    for position in range(tgt.size(1)):
        logits, state = model.decode_step(tgt[:, position], position, encoded, state)
        steps.append(logits)
    torch.testing.assert_close(torch.stack(steps, dim=1), full, rtol=0, atol=1e-5)


def test_decoder_state_and_encoding_are_batch_first(model: Seq2SeqModel) -> None:
    src = random_tokens(5, 6)
    encoded = model.encode(src)
    state = model.init_state(encoded)
    for tensor in [*encoded.values(), *state.values()]:
        assert tensor.size(0) == 5


def test_attention_weights_are_zero_on_padding_and_sum_to_one_and_leave_the_step_unchanged(model: Seq2SeqModel) -> None:
    src = random_tokens(2, 6)
    src[0, 3:] = SPECIAL.pad
    encoded = model.encode(src)
    state = model.init_state(encoded)
    bos = torch.full((2,), SPECIAL.bos)
    logits, _, weights = model.decode_step_with_attention(bos, 0, encoded, state)
    layers = 1 if isinstance(model, AttentionRNN) else len(model.decoder_layers)
    assert weights.shape == (2, layers, 6)
    assert torch.all(weights[0, :, 3:] == 0)
    torch.testing.assert_close(weights.sum(dim=-1), torch.ones(2, layers))
    torch.testing.assert_close(logits, model.decode_step(bos, 0, encoded, state)[0])
