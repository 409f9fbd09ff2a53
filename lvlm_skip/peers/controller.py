"""The decoding-time peers inside ``generate()``: DoLa, DeCo and VCD, as variants of :func:`lvlm_skip.wrap`.

    lvlm_skip.wrap(model, variant="dola")                     # or "deco", "vcd", with their options
    out = model.generate(**inputs, repetition_penalty=1.2)    # DoLa's recommended penalty

Each peer replaces, at every forward, the logits of the predicting (last) position by its
contrast; transformers' logits processors (penalties, masks, warpers) then run on them as they
do on the model's own logits, as in transformers 4.x's DoLa decoding. Nothing is skipped: every
layer runs. The per-step math is in :mod:`lvlm_skip.peers.dola`, :mod:`lvlm_skip.peers.deco` and
:mod:`lvlm_skip.peers.vcd` (definitions, defaults and sources there); the options are
:class:`~lvlm_skip.config.DolaConfig`, :class:`~lvlm_skip.config.DecoConfig` and
:class:`~lvlm_skip.config.VcdConfig`:

* **DoLa** (Chuang et al., ICLR 2024): the final layer's log-probabilities minus those of the
  candidate premature layer that differs most from it, after the relative-top plausibility filter.
  The premature layers are read out as transformers 4.x does, ``lm_head(h_j)`` without the final norm.
* **DeCo** (Wang et al., ICLR 2025): among the final layer's top candidates, the window layer that
  gives them the highest probability is the anchor; its logits, weighted by that probability and
  ``alpha``, are added to the final ones (normed readout, as the released code).
* **VCD** (Leng et al., CVPR 2024): a second forward pass on a diffusion-noised copy of the image,
  with its own KV cache, and ``(1 + alpha) z - alpha z_noised`` on the tokens that pass the adaptive
  plausibility cut ``beta``. The noise of an image is a function of the image and ``seed`` alone, so a
  row decodes the same alone or in a batch.

The report (:class:`PeerReport`) gives, per step and row, the layer each peer chose (DoLa's premature
layer, DeCo's anchor; -1 for VCD).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from transformers import DynamicCache

from ..anatomy import ModelAnatomy, encode_images
from ..clock import SequenceClock, UnplaceableForwardError
from ..config import DecoConfig, DolaConfig, VcdConfig, build_config
from ..hooks import ForwardRouting, LastPositionHooks
from ..readout import readout_logits
from ..variants import PeerName
from ..variants import variant as declared_variant
from .deco import deco_correct, deco_default_window
from .dola import dola_candidate_layers, dola_contrast
from .vcd import diffusion_noise, vcd_contrast

def peer_config(variant: PeerName, **options) -> DolaConfig | DecoConfig | VcdConfig:
    """The options of peer ``variant`` (its declaration's options type), rejecting unknown ones with the known ones."""
    declared = declared_variant(variant)
    if not declared.is_peer:
        raise ValueError(f"{variant!r} is not a peer")
    try:
        return build_config(declared.options, **options)
    except TypeError as error:
        raise TypeError(f"{variant}: {error}") from None


@dataclass
class PeerReport:
    """What a peer did at each step of the last sequence.

    Attributes:
        variant: dola, deco or vcd.
        config: The peer's options.
        num_layers: ``L``.
        chosen_layer: `(steps, batch)` DoLa's premature layer / DeCo's anchor layer at each step (-1: none).
    """

    variant: PeerName
    config: object
    num_layers: int
    chosen_layer: np.ndarray
    notes: list[str] = field(default_factory=list)

    @property
    def num_steps(self) -> int:
        return int(self.chosen_layer.shape[0])

    def mean_layers_skipped(self) -> float:
        """Peers skip no layer."""
        return 0.0

    def row_layers_skipped(self, row: int, steps: int) -> float:
        """Peers skip no layer."""
        return 0.0

    def to_dict(self) -> dict:
        return {"variant": self.variant, "config": asdict(self.config), "num_layers": self.num_layers,
                "chosen_layer": self.chosen_layer.tolist()}


class PeerController:
    """Installs one peer on a model: reads the layers it needs and replaces the last position's logits.

    Where a forward falls in a sequence is read from ``clock``, which the model's forward pre-hook
    advances (:class:`~lvlm_skip.hooks.SequenceClockHook`) before the routed ``forward`` runs.
    """

    def __init__(self, model, anatomy: ModelAnatomy, variant: PeerName, config, clock: SequenceClock):
        self.model = model
        self.anatomy = anatomy
        self.clock = clock
        self._placed = clock.forwards  # the clock's count at the last forward contrasted
        self.variant = variant
        self.config = config
        L = anatomy.num_layers
        if variant == "dola":
            tied = anatomy.tied_embeddings
            self.layers = dola_candidate_layers(L, config.layers, tie_word_embeddings=tied)
        elif variant == "deco":
            self.layers = list(config.layers) if config.layers else deco_default_window(L)
        else:
            self.layers = []
        for layer in self.layers:
            anatomy.check_layer(layer, allow_embeddings=True)
        if variant == "deco" and max(self.layers) >= L:
            raise ValueError(f"DeCo's anchor layers must precede the last layer {L}, got {list(self.layers)}")
        self.routings = []
        self.chosen: list[torch.Tensor] = []
        self._vcd_cache = None
        self._image_inputs: dict = {}

    @property
    def accepts_cached_prefix(self) -> bool:
        """Whether a sequence may start after a cached stock prefix of its prompt (:mod:`lvlm_skip.clock`): DoLa
        and DeCo contrast the predicting position only; VCD's second pass needs the whole prompt and its image."""
        return self.variant != "vcd"

    def install(self) -> list:
        """Install the hooks / patches; returns them (each has ``remove()``)."""
        if self.layers:
            self._states = LastPositionHooks(self.anatomy)
            self.routings.append(self._states)
        self.routings.append(ForwardRouting(self.model, self._forward))
        return self.routings

    def reset(self) -> None:
        """Forget the previous sequence."""
        self.chosen = []
        self._vcd_cache = None

    def begin_generate(self, generate_kwargs: dict) -> None:
        """Called by the wrapped ``generate``: keep the image inputs, which ``generate`` encodes before decoding."""
        self._image_inputs = {k: v for k, v in generate_kwargs.items() if k.startswith(("pixel_values", "image_"))}

    def report(self) -> PeerReport:
        batch = self.chosen[0].shape[0] if self.chosen else 0
        chosen = torch.stack(self.chosen).cpu().numpy() if self.chosen else np.zeros((0, batch), dtype=np.int64)
        return PeerReport(self.variant, self.config, self.anatomy.num_layers, chosen)

    # -- the patched forward -------------------------------------------------------------------------------

    def _forward(self, stock_forward, *args, **kwargs):
        if self.clock.forwards == self._placed:
            raise UnplaceableForwardError(
                "model.forward(...) was called directly: lvlm_skip places each step by the model's own call, "
                "model(...) or generate"
            )
        self._placed = self.clock.forwards
        prefill = self.clock.position.starts_sequence
        if prefill and self.clock.position.cached and not self.accepts_cached_prefix:
            raise UnplaceableForwardError(
                f"a prefill after {self.clock.position.cached} cached prompt positions: VCD's second pass reads the "
                "whole prompt with the noised image, so it needs the prompt uncached"
            )
        if prefill:
            self.reset()
        outputs = stock_forward(*args, **kwargs)
        final = outputs.logits[:, -1]  # shape: (batch, vocab)
        if self.variant == "vcd":
            new, chosen = self._vcd(stock_forward, final, prefill, args, kwargs), None
        else:
            states = self._states.recorder.calls.pop()  # shape: (L + 1, batch, hidden)
            self._states.recorder.calls.clear()
            new, chosen = self._layer_contrast(final, states)
        self.chosen.append(chosen if chosen is not None else torch.full(final.shape[:1], -1, dtype=torch.long))
        logits = outputs.logits.clone()
        logits[:, -1] = new.to(logits.dtype)
        outputs.logits = logits
        return outputs

    def _layer_contrast(self, final: torch.Tensor, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """DoLa / DeCo on this step's final logits and layer states."""
        anatomy = self.anatomy
        picked = states[self.layers].to(anatomy.head_device)  # shape: (C, batch, hidden)
        if self.variant == "dola":
            # 4.x's premature readout: the head alone on the un-normed state (the embeddings included)
            premature = readout_logits(anatomy, picked, normed=False, model_transform=False)  # shape: (C, batch, vocab)
            logits, index = dola_contrast(final, premature, relative_top=self.config.relative_top)
        else:
            window = readout_logits(anatomy, picked, normed=True)  # shape: (W, batch, vocab)
            logits, index = deco_correct(final, window, alpha=self.config.alpha, top_p=self.config.top_p,
                                                  top_k=self.config.top_k)
        layers = torch.tensor(self.layers, device=index.device)
        return logits, layers[index].cpu()

    def _vcd(self, stock_forward, final: torch.Tensor, prefill: bool, args, kwargs) -> torch.Tensor:
        """The second pass on the noised image (its own cache), and the contrast."""
        if prefill or self._vcd_cache is None:
            self._vcd_cache = DynamicCache(config=self.model.config)
        noised = self.anatomy.model_kwargs_with_cache(kwargs, self._vcd_cache)
        cfg = self.config
        if kwargs.get("pixel_values") is not None:  # a direct forward call
            noised["pixel_values"] = noised_images(kwargs["pixel_values"], cfg.noise_step, cfg.seed)
        elif (kwargs.get("mm_encoder_outputs") or {}).get("image") is not None:  # generate encoded the image already
            pixels = noised_images(self._image_inputs["pixel_values"], cfg.noise_step, cfg.seed)
            image = encode_images(self.model, dict(self._image_inputs, pixel_values=pixels))
            noised["mm_encoder_outputs"] = dict(kwargs["mm_encoder_outputs"], image=image)
        other = stock_forward(*args, **noised).logits[:, -1]
        return vcd_contrast(final, other, alpha=self.config.alpha, beta=self.config.beta)


def noised_images(pixel_values: torch.Tensor, noise_step: int, seed: int) -> torch.Tensor:
    """VCD's diffusion noise on each image of `(batch, ...)` ``pixel_values``, seeded by the image's content.

    A row's noise depends on its own pixels and ``seed`` only, so batching does not change it.
    """
    rows = []
    for image in pixel_values:
        digest = hashlib.blake2b(image.detach().float().cpu().numpy().tobytes(), digest_size=8).digest()
        generator = torch.Generator(device="cpu").manual_seed((int.from_bytes(digest, "little") ^ seed) % (2**63))
        rows.append(diffusion_noise(image[None].cpu(), noise_step, generator=generator).to(image.device))
    return torch.cat(rows)
