"""Input and output names of the exported graphs (Hugging Face Optimum's conventions), shared
by the exporter that writes them and the decoder that feeds them."""

ENCODER_INPUT_IDS = "input_ids"
ENCODER_HIDDEN_STATES = "encoder_hidden_states"
ENCODER_MASK = "encoder_attention_mask"  # int32 (B, S): 1 for a real token, 0 for padding
DECODER_INPUT_IDS = "input_ids"
POSITION_IDS = "position_ids"  # int64 (B, 1): the target position each row is decoding
# int32 (B, past + 1): 1 for the self-attention cache slots (and the new one) a row may attend
# to. Rows that joined a running batch late have empty slots before their first token, so rows
# at different positions can share one cache tensor (in-flight batching).
DECODER_MASK = "decoder_attention_mask"
# float (B, V): log-softmax of the next-token logits, computed in the graph (vectorised and
# multi-threaded there, where numpy would spend a tenth of a decoder step on it). Graphs with the
# bool input output_log_probs copy it out only when that is true (else an empty (0, V) tensor):
# a search that reads top_k tokens leaves the (B, V) copy undone.
LOG_PROBS = "log_probs"
OUTPUT_LOG_PROBS = "output_log_probs"
# The top_k (int64 [1]) best next tokens of each row, best first, with their log-probabilities:
# (B, K) each. A search that needs no more reads these instead of the (B, V) distribution
# (greedy: K = 1; beam k: K = 2k holds the k best non-eos candidates of a sentence).
TOP_K = "top_k"
TOP_IDS = "top_ids"
TOP_LOG_PROBS = "top_log_probs"
# The RNN decoder's state (B, layers, H); an LSTM also has a cell state. The encoder emits the
# first present_* state, each step turns past_* into present_*.
RNN_PAST_HIDDEN = "past_hidden"
RNN_PAST_CELL = "past_cell"
RNN_PRESENT_HIDDEN = "present_hidden"
RNN_PRESENT_CELL = "present_cell"
ATTENTION_WEIGHTS = "attention_weights"  # (B, S): the RNN decoder's attention at this step
# The Transformer decoder's cross-attention, averaged over heads, of every layer: (B, layers, S)
# when the bool input output_attentions is true, else an empty (0, layers, 0) tensor, so that a
# step that does not need it does not compute it.
OUTPUT_ATTENTIONS = "output_attentions"
CROSS_ATTENTIONS = "cross_attentions"


def past_key(layer: int) -> str:
    return f"past_key_values.{layer}.decoder.key"


def past_value(layer: int) -> str:
    return f"past_key_values.{layer}.decoder.value"


def cross_key(layer: int) -> str:
    return f"past_key_values.{layer}.encoder.key"


def cross_value(layer: int) -> str:
    return f"past_key_values.{layer}.encoder.value"


def present_key(layer: int) -> str:
    return f"present.{layer}.decoder.key"


def present_value(layer: int) -> str:
    return f"present.{layer}.decoder.value"

# The decoder step in its fixed-shape form (export/transformer_fixed_step.py), which a CUDA graph
# can replay: every tensor has the same shape and address at every step, and greedy search runs
# in the graph. Each row's state goes in under these names and comes out as next_<name>, bound
# to the other of two buffers, so the next step reads what this one wrote without the host.
# int32 (B,): tokens already in a row's self-attention cache, i.e. the position it decodes now
# (GroupQueryAttention's seqlens_k: it writes the new key/value there and attends up to it).
SEQLENS_K = "seqlens_k"
# int32 scalar: the caches' capacity (GroupQueryAttention's total_sequence_length).
TOTAL_SEQUENCE_LENGTH = "total_sequence_length"
FINISHED = "finished"  # bool (B,): emitted eos or reached its maximum length; a finished row stays as it is
MAX_LENGTHS = "max_lengths"  # int32 (B,): the most tokens a row may emit, eos included
SCORES = "scores"  # float32 (B,): the sum of the emitted tokens' log-probabilities
TOKEN_HISTORY = "token_history"  # int64 (B, capacity): the token each row emitted at each position
FIXED_STEP_STATE = (DECODER_INPUT_IDS, SEQLENS_K, FINISHED, SCORES, TOKEN_HISTORY)


def next_state(name: str) -> str:
    """The fixed-shape step's output that becomes its input `name` at the next step."""
    return f"next_{name}"
