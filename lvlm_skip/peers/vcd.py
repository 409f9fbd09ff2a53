"""VCD's per-step contrast: the logits on the image against those on a diffusion-noised copy.

VCD (Leng et al., CVPR 2024, "Visual Contrastive Decoding")
------------------------------------------------------------
Reproduces the released code (DAMO-NLP-SG/VCD, commit d6568ff, ``vcd_utils/vcd_sample.py``
("version 2" cutoff) and ``vcd_utils/vcd_add_noise.py``). Per step (:func:`vcd_contrast`), with logits
``z`` on the image and ``z'`` on the noised image (second forward pass, own KV cache):
``(1 + alpha) z - alpha z'`` for the tokens with ``z(v) >= log(beta) + max z`` (equivalently
``p(v) >= beta max p``, on the *clean* distribution), ``-inf`` for the others. The noised image
(:func:`diffusion_noise`) is the forward diffusion ``q(x_t | x_0)`` at ``t = noise_step`` of a
1000-step schedule ``beta_t = sigmoid(linspace(-6, 6, 1000))_t * (5e-3 - 1e-5) + 1e-5``:
``sqrt(abar_t) x + sqrt(1 - abar_t) eps``, ``abar_t = prod_{s <= t} (1 - beta_s)``, applied to the
already normalised pixel tensor (``abar_500 = 0.7448``). Defaults: ``alpha = 1``, ``beta = 0.1``,
``noise_step = 500`` (``experiments/eval/object_hallucination_vqa_llava.py``; its POPE script
``llava1.5_pope.bash`` passes ``cd_beta = 0.2``; ``vcd_sample.py`` falls back to ``alpha = 0.5``).
Their sampling then applies the usual processors and warpers (temperature, top-p) to this output.
Differences: the noise comes from an optional ``torch.Generator``, drawn in float32 for the whole
tensor at once (theirs: global RNG, one image at a time).

Pure tensor functions on one decoding step's next-token logits, with the conventions of
:mod:`lvlm_skip.peers` (float32, layer numbering, no input modified).
"""

from __future__ import annotations

import math

import torch

from ..config import VCD_ALPHA, VCD_BETA, VCD_NOISE_STEP, VCD_DIFFUSION_STEPS, check_int, check_number
from .checks import check_float_tensor, check_stack


def vcd_contrast(
    logits: torch.Tensor, noised_logits: torch.Tensor, alpha: float = VCD_ALPHA, beta: float = VCD_BETA
) -> torch.Tensor:
    """One VCD step: contrast the clean and noised-image logits inside the plausible set.

    ``z(v) = (1 + alpha) z(v) - alpha z'(v)`` where ``z(v) >= log(beta) + max_u z(u)`` (i.e.
    ``p(v) >= beta max p`` on the clean distribution), ``-inf`` elsewhere. Tokens the model itself masked
    (logit ``-inf`` or its dtype's minimum, e.g. Chameleon's image tokens) stay out at every ``beta``: their
    contrast would be ``-inf + inf``, NaN, which greedy search would pick.

    Args:
        logits: `(..., vocab)` logits ``z`` on the original image.
        noised_logits: `(..., vocab)` logits ``z'`` on the noised image, same shape.
        alpha: ``>= 0``; default 1 (released eval scripts). ``0`` returns ``z`` on the plausible set.
        beta: In ``[0, 1]``; default 0.1. ``0`` keeps every token.

    Returns:
        Float32, the shape of ``logits``.
    """
    check_float_tensor("logits", logits, None, "(..., vocab)")
    check_float_tensor("noised_logits", noised_logits, None, "(..., vocab)")
    if logits.dim() < 1 or noised_logits.shape != logits.shape:
        raise ValueError(
            f"`noised_logits` has to have the shape of `logits` {tuple(logits.shape)}, got {tuple(noised_logits.shape)}"
        )
    check_number("alpha", alpha, 0.0)
    check_number("beta", beta, 0.0, 1.0)
    clean = logits.float()
    # 1. the cutoff, in logit space of the clean distribution (log beta taken in float32 as they do)
    # shape: (..., 1)
    log_beta = torch.log(torch.tensor(float(beta), dtype=torch.float32, device=clean.device))
    cutoff = log_beta + clean.amax(-1, keepdim=True)
    # 2. the contrast, implausible tokens removed
    # shape: (..., vocab)
    contrast = (1 + alpha) * clean - alpha * noised_logits.float()
    masked = logits <= torch.finfo(logits.dtype).min  # -inf, or the minimum a model masks with
    return contrast.masked_fill((clean < cutoff) | masked, -math.inf)


def _alpha_bar(noise_step: int) -> torch.Tensor:
    """0-dim float32 ``abar_t``, computed as ``vcd_add_noise.py`` does (float32 linspace, cumprod)."""
    check_int("noise_step", noise_step, 0, VCD_DIFFUSION_STEPS - 1)
    betas = torch.sigmoid(torch.linspace(-6.0, 6.0, VCD_DIFFUSION_STEPS)) * (0.5e-2 - 1e-5) + 1e-5
    return torch.cumprod(1 - betas, dim=0)[noise_step]


def diffusion_alpha_bar(noise_step: int = VCD_NOISE_STEP) -> float:
    """``abar_t = prod_{s <= t} (1 - beta_s)`` of VCD's schedule, in float32 as they compute it.

    ``beta_s = sigmoid(linspace(-6, 6, 1000))_s * (5e-3 - 1e-5) + 1e-5``; ``abar_0 = 0.99997766``,
    ``abar_500 = 0.7447987``, ``abar_999 = 0.0812492``.

    Args:
        noise_step: ``t`` in ``[0, 999]``; default 500.
    """
    return float(_alpha_bar(noise_step))


def diffusion_noise(
    pixel_values: torch.Tensor, noise_step: int = VCD_NOISE_STEP, generator: torch.Generator | None = None
) -> torch.Tensor:
    """VCD's distorted image: forward diffusion of the normalised pixels to step ``noise_step``.

    ``x_t = sqrt(abar_t) x + sqrt(1 - abar_t) eps``, ``eps ~ N(0, I)`` (:func:`diffusion_alpha_bar`;
    at ``t = 500``: ``0.8630 x + 0.5052 eps``). Applied to the tensor the image processor returns
    (already normalised), as ``vcd_add_noise.py`` does.

    Args:
        pixel_values: Any shape, e.g. `(batch, channels, height, width)`; floating point.
        noise_step: ``t`` in ``[0, 999]``; default 500.
        generator: Source of ``eps`` (on the device of ``pixel_values``), drawn in float32 with the
            shape of ``pixel_values``; ``None`` uses torch's global RNG.

    Returns:
        The noised tensor, dtype and shape of ``pixel_values``.
    """
    check_float_tensor("pixel_values", pixel_values, None, "(...)")
    alpha_bar = _alpha_bar(noise_step).to(pixel_values.device)
    # shape: like pixel_values
    noise = torch.randn(pixel_values.shape, generator=generator, dtype=torch.float32, device=pixel_values.device)
    noised = torch.sqrt(alpha_bar) * pixel_values.float() + torch.sqrt(1 - alpha_bar) * noise
    return noised.to(pixel_values.dtype)
