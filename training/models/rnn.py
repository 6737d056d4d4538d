"""Attention RNN encoder-decoder (Luong et al., 2015, global attention without input feeding).

Without input feeding the decoder RNN does not read the previous attention output, so in
training it runs over the whole target in one call and attention is computed for all steps at
once; at inference the same equations run one step at a time.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nmt_spec import RNNConfig
from training.models.base import DecoderState, Encoded, Seq2SeqModel, source_padding_mask


def _rnn(config: RNNConfig, input_size: int, hidden_size: int, layers: int, bidirectional: bool) -> nn.RNNBase:
    cell = nn.GRU if config.cell == "gru" else nn.LSTM
    return cell(
        input_size,
        hidden_size,
        num_layers=layers,
        batch_first=True,
        bidirectional=bidirectional,
        dropout=config.dropout if layers > 1 else 0.0,
    )


class LuongAttention(nn.Module):
    """score(h_t, e_s) = h_t . e_s (dot) or h_t . W_a e_s (general); softmax over source
    positions with padding masked; context = sum_s a_s e_s."""

    def __init__(self, config: RNNConfig) -> None:
        super().__init__()
        self.general = (
            nn.Linear(config.hidden_size, config.hidden_size, bias=False) if config.attention == "general" else None
        )

    def forward(self, queries: Tensor, encoder_states: Tensor, src_mask: Tensor) -> tuple[Tensor, Tensor]:
        """queries (B, T, H), encoder_states (B, S, H), src_mask (B, S) -> context (B, T, H),
        weights (B, T, S)."""
        keys = encoder_states if self.general is None else self.general(encoder_states)
        scores = torch.bmm(queries, keys.transpose(1, 2))  # (B, T, S)
        scores = scores.masked_fill(~src_mask[:, None, :], torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=-1)
        return torch.bmm(weights, encoder_states), weights


class AttentionRNN(Seq2SeqModel):
    def __init__(self, config: RNNConfig, pad_id: int) -> None:
        super().__init__()
        self.config = config
        self.pad_id = pad_id
        self.src_embed = nn.Embedding(config.vocab_size, config.embed_dim, padding_idx=pad_id)
        self.tgt_embed = (
            self.src_embed
            if config.tie_embeddings
            else nn.Embedding(config.vocab_size, config.embed_dim, padding_idx=pad_id)
        )
        directions = 2 if config.bidirectional else 1
        if config.hidden_size % directions:
            raise ValueError("hidden_size must be even for a bidirectional encoder")
        # Both directions together give hidden_size features, the decoder's size, so dot
        # attention needs no projection of the encoder states.
        self.encoder_rnn = _rnn(
            config, config.embed_dim, config.hidden_size // directions, config.encoder_layers, config.bidirectional
        )
        self.bridge = nn.Linear(config.hidden_size, config.hidden_size * config.decoder_layers)
        self.decoder_rnn = _rnn(config, config.embed_dim, config.hidden_size, config.decoder_layers, False)
        self.attention = LuongAttention(config)
        self.combine = nn.Linear(2 * config.hidden_size, config.hidden_size)  # h~ = tanh(W_c [c; h])
        self.readout = nn.Linear(config.hidden_size, config.embed_dim)
        self.output_proj = nn.Linear(config.embed_dim, config.vocab_size, bias=False)
        self.output_proj.weight = self.tgt_embed.weight  # Press & Wolf (2017) weight tying
        self.dropout = nn.Dropout(config.dropout)

    def encode(self, src: Tensor) -> Encoded:
        src_mask = source_padding_mask(src, self.pad_id)
        lengths = src_mask.sum(dim=1)
        embedded = self.dropout(self.src_embed(src))
        packed = nn.utils.rnn.pack_padded_sequence(embedded, lengths.cpu(), batch_first=True, enforce_sorted=False)
        outputs, _ = self.encoder_rnn(packed)
        states, _ = nn.utils.rnn.pad_packed_sequence(outputs, batch_first=True, total_length=src.size(1))
        return {"memory": states, "src_mask": src_mask}

    def init_state(self, encoded: Encoded) -> DecoderState:
        """The decoder starts from the mean of the encoder states (padding excluded)."""
        memory, src_mask = encoded["memory"], encoded["src_mask"]
        weights = src_mask.unsqueeze(-1).to(memory.dtype)
        mean = (memory * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
        hidden = torch.tanh(self.bridge(mean)).view(-1, self.config.decoder_layers, self.config.hidden_size)
        state = {"hidden": hidden}  # (B, L, H): batch first, unlike torch's RNN state layout
        if self.config.cell == "lstm":
            state["cell"] = torch.zeros_like(hidden)
        return state

    def _run_decoder(self, embedded: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState]:
        hidden = state["hidden"].transpose(0, 1).contiguous()
        if self.config.cell == "lstm":
            outputs, (hidden, cell) = self.decoder_rnn(embedded, (hidden, state["cell"].transpose(0, 1).contiguous()))
            return outputs, {"hidden": hidden.transpose(0, 1), "cell": cell.transpose(0, 1)}
        outputs, hidden = self.decoder_rnn(embedded, hidden)
        return outputs, {"hidden": hidden.transpose(0, 1)}

    def _output(self, decoder_outputs: Tensor, encoded: Encoded) -> tuple[Tensor, Tensor]:
        context, weights = self.attention(decoder_outputs, encoded["memory"], encoded["src_mask"])
        attentional = torch.tanh(self.combine(torch.cat([context, decoder_outputs], dim=-1)))
        logits = self.output_proj(self.readout(self.dropout(attentional)))
        return logits, weights

    def decode_step_with_attention(
        self, prev_tokens: Tensor, step: int, encoded: Encoded, state: DecoderState
    ) -> tuple[Tensor, DecoderState, Tensor]:
        """The attention is the one layer's weights: (B, 1, S)."""
        embedded = self.tgt_embed(prev_tokens).unsqueeze(1)
        outputs, new_state = self._run_decoder(embedded, state)
        logits, weights = self._output(outputs, encoded)
        return logits.squeeze(1), new_state, weights

    def decode_step(
        self, prev_tokens: Tensor, step: int, encoded: Encoded, state: DecoderState
    ) -> tuple[Tensor, DecoderState]:
        logits, new_state, _ = self.decode_step_with_attention(prev_tokens, step, encoded, state)
        return logits, new_state

    def forward(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        encoded = self.encode(src)
        outputs, _ = self._run_decoder(self.dropout(self.tgt_embed(tgt_in)), self.init_state(encoded))
        logits, _ = self._output(outputs, encoded)
        return logits
