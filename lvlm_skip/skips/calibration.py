"""Static calibration: a row's critical and mutation layers measured once, on the prompt.

Before the prefill writes anything to the cache, the decoder runs once more over the prompt with
every layer and no cache. The full-vocabulary readout of the prompt's last position (the position
that predicts generated token 0) gives that row's JSD curve, and :func:`~lvlm_skip.detection.detect_layers`
gives ``c`` and ``M``. Below the first layer that any row skips, the prefill computes exactly what
calibration computed, so it reuses those outputs (:class:`Calibration.outputs`) and only writes their
K/V into the cache.

A measurement from one position is a weak basis (the first generated word is often "The"): a
layer profile over many content words (:mod:`lvlm_skip.profiles`) is the better source of ``c``
and ``M`` for static skipping.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..anatomy import ModelAnatomy, unpack_layer_output
from ..config import LayerChoice, ReadoutName
from ..detection import DetectionConfig, detect_layers
from ..divergence import adjacent_js_divergence, adjacent_top1_changes
from ..readout import Lens, stack_layer_logprobs


@dataclass(frozen=True)
class PromptLayers:
    """One row's layers measured at the prompt's last position.

    Attributes:
        critical: Critical layer (0 = none).
        mutation: Mutation layers, ascending.
        jsd: ``d_1..d_L`` in nats.
    """

    critical: int
    mutation: tuple[int, ...]
    jsd: tuple[float, ...]

    def layer_choice(self) -> LayerChoice:
        """The measured ``c`` (0: none) and ``M`` as a :class:`~lvlm_skip.config.LayerChoice`."""
        return LayerChoice(self.critical, self.mutation, source="measured at the prompt's last position")

    def to_dict(self) -> dict:
        return {"critical": self.critical, "mutation": list(self.mutation), "jsd": list(self.jsd)}


@dataclass
class Calibration:
    """What the calibration pass measured, and the layer outputs the prefill may reuse.

    Attributes:
        rows: One :class:`PromptLayers` per batch row.
        outputs: Layer ``j``'s output over the whole prompt at index ``j - 1``, `(batch, seq, hidden)`,
            kept for the layers the prefill can reuse (empty when reuse is off).
    """

    rows: list[PromptLayers]
    outputs: list[torch.Tensor] = field(default_factory=list)


def curve_layers(jsd: torch.Tensor, top1_changed: torch.Tensor, detection: DetectionConfig) -> list[PromptLayers]:
    """Detect on `(batch, L)` curves and return one :class:`PromptLayers` per row."""
    found = detect_layers(jsd, top1_changed, detection)
    return [
        PromptLayers(int(found.critical[b]), tuple(found.mutation_layers(b)), tuple(jsd[b].tolist()))
        for b in range(jsd.shape[0])
    ]


@torch.no_grad()
def calibrate(
    anatomy: ModelAnatomy,
    layer_forwards,
    hidden: torch.Tensor,
    layer_kwargs: dict,
    *,
    detection: DetectionConfig,
    readout: ReadoutName | Lens = "normed",
    keep_outputs: bool = False,
) -> Calibration:
    """Run every layer once over the prompt without cache; detect on the last position's curve.

    Args:
        anatomy: The model's anatomy.
        layer_forwards: The layers' own forwards, in order.
        hidden: `(batch, seq, hidden)` the decoder's input embeddings of the prompt.
        layer_kwargs: The keyword arguments the decoder passed to the first layer (masks, rotary
            embeddings); the cache is replaced by none.
        detection: Thresholds.
        readout: ``"normed"`` or ``"raw"`` (:mod:`lvlm_skip.readout`).
        keep_outputs: Keep every layer's output for reuse by the prefill.

    Returns:
        The :class:`Calibration`.
    """
    kwargs = anatomy.layer_kwargs_with_cache(layer_kwargs, None)
    device = anatomy.head_device
    outputs = []
    # 1. every layer over the whole prompt, keeping the last position's state
    states = [hidden[:, -1].to(device)]
    h = hidden
    no_image = kwargs.get("cross_attention_states") is None
    for j, forward in enumerate(layer_forwards, start=1):
        if j in anatomy.cross_attention_layers and no_image:
            pass  # Mllama without an image: the decoder passes over its cross-attention layers, and so does this
        else:
            h = unpack_layer_output(forward(h, **kwargs))
        states.append(h[:, -1].to(device))
        if keep_outputs:
            outputs.append(h)
    # 2. exact full-vocabulary readout of the last position, its adjacent JSD and the detection
    logp = stack_layer_logprobs(anatomy, torch.stack(states), readout=readout)  # shape: (L + 1, batch, vocab)
    jsd = adjacent_js_divergence(logp).T  # shape: (batch, L)
    rows = curve_layers(jsd, adjacent_top1_changes(logp).T, detection)
    return Calibration(rows=rows, outputs=outputs)
