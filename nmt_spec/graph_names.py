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
