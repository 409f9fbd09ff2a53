"""Stage 1 of the scene-llava recipe: supervised pre-training of the CLIP vision tower.

LLaVA starts from a pretrained CLIP encoder; scene-llava has none, and learning vision only
through the language-model loss of a 16-layer decoder is slow (the decoder first learns the text
priors and ignores the image). This stage gives the tower a visual vocabulary first: a linear
probe on the patch features predicts, for each of the five positions, the object kind (or
nothing), its colour and its count. The probe is thrown away afterwards; only the tower's
weights carry over to stage 2 (:mod:`recipes.train_scene_llava`). The scenes of this stage come
from the prior-free ``uniform`` split: with the training priors (colour typical 87% of the time,
three to four kinds per typical colour) the tower learns colour shortcuts instead of shapes, and
the LVLM then fails on every atypically coloured object.
"""

from __future__ import annotations

import logging
import time

import torch
from torch import nn

from lvlm_skip.scenes import COLORS, KINDS, POSITIONS, make_scene

logger = logging.getLogger(__name__)

HEADS = (("kind", len(KINDS) + 1), ("color", len(COLORS) + 1), ("count", 4))
"""Per-position targets and their class counts (class 0 = no object)."""

INDEX_OFFSET = 10_000_000
"""Stage-1 scenes are scenes from this index on (stage 2 uses ``train`` indices from 0)."""

SPLIT = "uniform"
"""Stage-1 scenes carry no colour/co-occurrence prior, so the tower must learn shapes."""


def targets(scene) -> torch.Tensor:
    """``(len(POSITIONS), len(HEADS))`` class indices of a scene."""
    t = torch.zeros(len(POSITIONS), len(HEADS), dtype=torch.long)
    colors = list(COLORS)
    for o in scene.objects:
        p = POSITIONS.index(o.position)
        t[p, 0] = KINDS.index(o.kind) + 1
        t[p, 1] = colors.index(o.color) + 1
        t[p, 2] = o.count
    return t


class Probe(nn.Module):
    """Linear read-out of all patch features to per-position class logits."""

    def __init__(self, n_patches: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.out = nn.Linear(n_patches * hidden, len(POSITIONS) * sum(n for _, n in HEADS))

    def forward(self, patches: torch.Tensor) -> list[torch.Tensor]:
        """Logits per head, each ``(batch, positions, classes)``."""
        x = self.out(self.norm(patches).flatten(1)).view(patches.shape[0], len(POSITIONS), -1)
        return list(torch.split(x, [n for _, n in HEADS], dim=-1))


def pretrain_vision(model, processor, seed: int, steps: int, batch_size: int = 64,
                    lr: float = 1e-3, log_every: int = 25, device: torch.device | None = None,
                    log_rows: list | None = None) -> dict:
    """Train ``model``'s vision tower in place on per-position classification.

    Args:
        model: A ``LlavaForConditionalGeneration``; only its vision tower is trained.
        processor: The matching ``LlavaProcessor`` (its image processor makes pixel values).
        seed: Scene seed (``uniform`` split).
        steps: Optimisation steps.
        batch_size: Images per step.
        lr: Peak learning rate (linear warm-up over 5% of the steps, cosine decay).
        log_every: Log interval in steps.
        device: Device (default: the model's).
        log_rows: Optional list receiving ``(step, loss, kind_acc, color_acc, count_acc)``.

    Returns:
        Final smoothed accuracies per head and the seconds taken.
    """
    import math

    device = device or next(model.parameters()).device
    tower = model.model.vision_tower
    cfg = tower.config
    n_patches = (cfg.image_size // cfg.patch_size) ** 2
    probe = Probe(n_patches, cfg.hidden_size).to(device)
    params = list(tower.parameters()) + list(probe.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01, betas=(0.9, 0.98))
    warm = max(1, steps // 20)
    tower.train()
    start = time.time()
    ema = {name: 0.0 for name, _ in HEADS}
    for step in range(steps):
        f = (step + 1) / warm if step < warm else 0.5 * (1 + math.cos(
            math.pi * (step - warm) / max(1, steps - warm)))
        for g in opt.param_groups:
            g["lr"] = lr * f
        scenes = [make_scene(SPLIT, seed, INDEX_OFFSET + step * batch_size + j)
                  for j in range(batch_size)]
        pix = processor.image_processor([s.image for s in scenes], return_tensors="pt")[
            "pixel_values"].to(device)
        tgt = torch.stack([targets(s) for s in scenes]).to(device)
        feats = tower(pixel_values=pix).last_hidden_state[:, 1:]  # drop CLS like LLaVA
        logits = probe(feats)
        loss = sum(nn.functional.cross_entropy(lg.flatten(0, 1), tgt[..., h].flatten())
                   for h, lg in enumerate(logits))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        accs = []
        for h, ((name, _), lg) in enumerate(zip(HEADS, logits)):
            occupied = tgt[..., 0] > 0  # accuracy on the positions holding an object
            acc = (lg.argmax(-1) == tgt[..., h])[occupied].float().mean().item()
            ema[name] = acc if step == 0 else 0.9 * ema[name] + 0.1 * acc
            accs.append(acc)
        if log_rows is not None:
            log_rows.append((step, loss.item(), *accs))
        if step % log_every == 0 or step == steps - 1:
            logger.info("vision step %4d  loss %.3f  acc kind %.2f color %.2f count %.2f  %.0fs",
                        step, loss.item(), ema["kind"], ema["color"], ema["count"],
                        time.time() - start)
    return {"seconds": round(time.time() - start, 1), **{f"{k}_acc": v for k, v in ema.items()}}


@torch.no_grad()
def standardize_projector(model, processor, seed: int, n_images: int = 256,
                          batch_size: int = 64) -> dict:
    """Fold per-channel standardisation of the image features into the projector's first layer.

    The selected vision features share a large constant component (norm ~40 against ~0.3 for the
    text embeddings), which drowns the per-patch differences and lets the decoder treat every
    image the same. Measuring the feature mean ``mu`` and std ``sigma`` on ``n_images`` training
    scenes and rewriting ``linear_1`` as ``W' = W / sigma``, ``b' = b - W' mu`` makes the projector
    see standardised features; the architecture is unchanged (a data-dependent initialisation).

    Returns:
        Mean feature norm before standardisation and the mean of ``sigma``.
    """
    tower = model.model.vision_tower
    layer = model.config.vision_feature_layer
    device = next(model.parameters()).device
    feats = []
    for s in range(0, n_images, batch_size):
        scenes = [make_scene("train", seed, 2 * INDEX_OFFSET + i)
                  for i in range(s, min(n_images, s + batch_size))]
        pix = processor.image_processor([sc.image for sc in scenes], return_tensors="pt")[
            "pixel_values"].to(device)
        hs = tower(pixel_values=pix, output_hidden_states=True).hidden_states[layer]
        feats.append(hs[:, 1:].flatten(0, 1))
    x = torch.cat(feats)
    mu, sigma = x.mean(0), x.std(0).clamp_min(1e-4)
    lin = model.model.multi_modal_projector.linear_1
    lin.weight.div_(sigma)
    lin.bias.sub_(lin.weight @ mu)
    return {"feature_norm": x.norm(dim=-1).mean().item(), "mean_sigma": sigma.mean().item()}
