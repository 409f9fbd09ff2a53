"""The paper's figures from a :class:`~lvlm_skip.tracing.Trace` or plain arrays (never the model).

* :func:`plot_token_probabilities` (Fig. 2): per step, the probability at every layer of the tokens
  that are top-1 somewhere in the late window (the competitors), and the watch tokens.
* :func:`plot_contrasts` (Fig. 3): at given steps, a correct token against a hallucinated one.
* :func:`plot_jsd_heatmap` (Fig. 4): the adjacent-layer divergence per token and layer, absolute or
  scaled per layer as the authors do, on our layer axis or theirs; :func:`plot_jsd_comparison`
  puts several traces side by side (the §6 text-only control), :func:`plot_jsd_curves` their curves.
* :func:`plot_tsne_tokens` (Fig. 6) and :func:`plot_tsne_images` (Fig. 7): t-SNE of the per-layer
  states, coloured by the authors' four layer groups.
* :func:`plot_profile` (supplementary Fig. 2): a model's layer profile, critical-layer histogram and
  mutation frequency over many tokens.

Layer numbers follow :mod:`lvlm_skip.anatomy` (1-based, 0 = embeddings). Every function writes a PNG
and an SVG next to each other (``out_path`` with its suffix replaced) and returns both paths as a
:class:`~lvlm_skip.figures.common.FigureFiles`, a list that also holds the drawn figure (``.figure``).
matplotlib is imported here only, with the non-interactive Agg backend, so importing
``lvlm_skip`` costs nothing of it.
"""

from .common import AXES, NORMALIZATIONS, FigureFiles, column_labels, max_abs_scale
from .heatmap import plot_jsd_comparison, plot_jsd_curves, plot_jsd_heatmap
from .probabilities import plot_contrasts, plot_token_probabilities
from .profile import plot_profile
from .tsne import (
    AUTHORS_PERPLEXITY_IMAGES,
    AUTHORS_PERPLEXITY_TOKENS,
    LAST_STATES,
    SCALINGS,
    dominant_critical,
    layer_features,
    layer_groups,
    plot_tsne_images,
    plot_tsne_tokens,
)

__all__ = [
    "AUTHORS_PERPLEXITY_IMAGES", "AUTHORS_PERPLEXITY_TOKENS", "AXES", "LAST_STATES", "NORMALIZATIONS", "SCALINGS", "FigureFiles",
    "column_labels", "dominant_critical", "layer_features", "layer_groups", "max_abs_scale", "plot_contrasts",
    "plot_jsd_comparison", "plot_jsd_curves", "plot_jsd_heatmap", "plot_profile", "plot_token_probabilities", "plot_tsne_images",
    "plot_tsne_tokens",
]
