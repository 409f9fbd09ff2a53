"""Layer presets for the paper's models, citing only what the paper says.

The paper reads critical layers off its figures and gives **no mutation-layer numbers**: it says
that mutations happen "in deep layers" and vary by token (§4.1, #2). A preset therefore gives the
critical layer only; skip.1 and skip.2 need mutation layers, which come from a layer profile
measured on the model (:mod:`lvlm_skip.profiles`, ``lvlm-skip profile``) or from the user.

Numbers are the paper's own wording. Its layer numbers are not always on our axis: its Fig. 4
heatmap labels column ``i`` for JSD(h_i, h_{i+1}) counted from 0, so its column 18 is our ``d_19``
(the change made by layer 19); the text's "18-th layer" is taken here as our critical layer 18
and the difference is within the one-layer uncertainty of reading a figure.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import LayerChoice
from ..errors import InputError


@dataclass(frozen=True)
class LayerPreset:
    """What the paper says about one model's layers.

    Attributes:
        num_layers: Decoder depth ``L``.
        critical_layer: The critical layer the paper reads (our 1-based numbering).
        critical_range: The range the paper gives or implies.
        keep_last: skip.3 keeps this many final layers.
        sources: The paper's statements, by section.
    """

    num_layers: int
    critical_layer: int
    critical_range: tuple[int, int]
    keep_last: int
    sources: tuple[str, ...]

    def layer_choice(self, name: str) -> LayerChoice:
        """The preset's layers as a :class:`~lvlm_skip.config.LayerChoice` (no mutation layers)."""
        return LayerChoice(self.critical_layer, None, self.keep_last, source=f"preset {name}")

    def wrap_options(self) -> dict:
        """``lvlm_skip.wrap`` options the preset fixes (no mutation layers: see the module docstring)."""
        return {"critical_layer": self.critical_layer, "keep_last": self.keep_last}


PRESETS: dict[str, LayerPreset] = {
    "llava-1.5-7b": LayerPreset(
        num_layers=32,
        critical_layer=18,
        critical_range=(18, 20),
        keep_last=5,
        sources=(
            "§4.1 (Fig. 4, JSD): 'Around the 18-th layer, there is a clear distinction ... After the 18-th layer, "
            "the divergences rapidly decrease to near zero'",
            "§3.1 (Fig. 2, token probabilities): 'around the 20-th layer, the probabilities of these token sharply "
            "increase (... critical layers)'",
            "§4.2 / Fig. 5: skip.3 'we retain the final 5 layers'",
            "mutation layers: no numbers in the paper ('deep layers', token-dependent, §4.1 #2)",
        ),
    ),
    "llava-1.5-13b": LayerPreset(
        num_layers=40,
        critical_layer=16,
        critical_range=(16, 19),
        keep_last=5,
        sources=(
            "supplementary §3 (Fig. 3/4, JSD): 'A noticeable shift in the JS divergence values emerges at approximately "
            "the 16-th layer'",
            "supplementary §2 (Fig. 2): critical layers 'primarily concentrated in the 16th-19th layers'",
            "supplementary Fig. 5/6: skip.3 retains the final 5 layers",
            "mutation layers: no numbers in the paper",
        ),
    ),
}


def get_preset(name: str) -> LayerPreset:
    """The preset called ``name``.

    Raises:
        InputError: unknown name, with the known ones.
    """
    if name not in PRESETS:
        raise InputError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    return PRESETS[name]
