"""A translation's attention as a heatmap (source tokens across, target tokens down), for
`python -m server.client --attention-png`. matplotlib is the client's optional dependency
(`pip install nmt-serving[client]`), never the server image's: only this module imports it."""

from __future__ import annotations

from pathlib import Path

from nmt.v1 import translator_pb2 as pb

try:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt
except ImportError as missing:  # pragma: no cover - depends on the environment
    raise ImportError("--attention-png draws with matplotlib: pip install 'nmt-serving[client]' (or matplotlib)") from missing


def draw_attention(translation: pb.Translation, path: Path) -> None:
    """One panel per sentence of the text, each target token's row summing to 1."""
    sentences = list(translation.attention)
    if not sentences:
        raise ValueError("the translation carries no attention: send the request with return_attention")
    heights = [max(len(s.target_tokens), 1) for s in sentences]
    width = max(len(s.source_tokens) for s in sentences)
    figure, axes = plt.subplots(len(sentences), 1, figsize=(1.0 + 0.45 * width, 1.2 + 0.4 * sum(heights)), gridspec_kw={"height_ratios": heights}, squeeze=False)
    for axis, sentence in zip(axes[:, 0], sentences):
        weights = [list(row.weights) for row in sentence.weights]
        image = axis.imshow(weights, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
        axis.set_xticks(range(len(sentence.source_tokens)), list(sentence.source_tokens), rotation=60, ha="right")
        axis.set_yticks(range(len(sentence.target_tokens)), list(sentence.target_tokens))
        axis.tick_params(top=True, labeltop=True, bottom=False, labelbottom=False)
        figure.colorbar(image, ax=axis, fraction=0.03)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
