"""Trace a greedy generation layer by layer: the paper's three levels of analysis in one record.

:func:`trace` runs the model's own ``generate`` (greedy) with hooks that keep the last position's
residual state at every depth, then reads every layer out over the full vocabulary, one step at a
time, and keeps only what is small: per step and layer the emitted token's probability, the top-k,
the watch tokens and the adjacent-layer JSD. Memory is O(steps x layers x k), never O(vocab), except
the optional hidden vectors (O(steps x layers x hidden)) used for the t-SNE figures.
"""

from __future__ import annotations

import json
import logging
import numbers
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .anatomy import ModelAnatomy
from .detection import DetectionConfig, detect_layers
from .divergence import adjacent_js_divergence, adjacent_top1_changes
from .hooks import record_last_position_states
from .readout import check_readout, stack_layer_logprobs

logger = logging.getLogger(__name__)

TRACE_JSON = "trace.json"
TRACE_ARRAYS = "trace.npz"


@dataclass
class Trace:
    """What a traced generation produced. Arrays are batch-first numpy arrays.

    Readout rows are ``j = first_layer..L`` (``first_layer`` is 0 when the embeddings were requested,
    else 1); ``R = L + 1 - first_layer`` rows. JSD and detection always cover layers ``1..L``.

    Attributes:
        token_ids: `(batch, steps)` int64 emitted tokens (pad after a row's end).
        lengths: `(batch,)` number of generated tokens per row, EOS included.
        tokens: Decoded text of each emitted token, per row (``lengths[b]`` entries).
        texts: The generated text per row.
        token_probs: `(batch, steps, R)` probability of the emitted token at each readout.
        topk_ids: `(batch, steps, R, k)` top-k token ids at each readout.
        topk_probs: `(batch, steps, R, k)` their probabilities.
        watch_probs: `(batch, steps, R, W)` probabilities of the watch tokens.
        jsd: `(batch, steps, L)` adjacent-layer JSD, ``jsd[..., j - 1] = JSD(p_{j-1} || p_j)``, nats.
        top1_changed: `(batch, steps, L)` bool, top-1 of ``p_j`` differs from ``p_{j-1}``.
        critical: `(batch, steps)` detected critical layer (0 = none).
        mutation: `(batch, steps, L)` bool detected mutation layers.
        hidden: Optional `(batch, steps, L + 1, hidden)` float16 un-normed states ``h_0..h_L`` of the
            predicting position.
        watch_tokens: Names of the watch tokens; ``watch_token_ids`` their ids.
        meta: Settings and model facts (num_layers, vocab_size, readout, reduction, detection, ...).
    """

    token_ids: np.ndarray
    lengths: np.ndarray
    tokens: list[list[str]]
    texts: list[str]
    token_probs: np.ndarray
    topk_ids: np.ndarray
    topk_probs: np.ndarray
    watch_probs: np.ndarray
    jsd: np.ndarray
    top1_changed: np.ndarray
    critical: np.ndarray
    mutation: np.ndarray
    watch_tokens: list[str] = field(default_factory=list)
    watch_token_ids: list[int] = field(default_factory=list)
    meta: dict = field(default_factory=dict)
    hidden: np.ndarray | None = None

    _ARRAYS = (
        "token_ids", "lengths", "token_probs", "topk_ids", "topk_probs", "watch_probs",
        "jsd", "top1_changed", "critical", "mutation", "hidden",
    )

    @property
    def num_layers(self) -> int:
        return int(self.meta["num_layers"])

    @property
    def first_layer(self) -> int:
        return int(self.meta["first_layer"])

    @property
    def layer_numbers(self) -> np.ndarray:
        """The readout rows' layer numbers ``first_layer..L``."""
        return np.arange(self.first_layer, self.num_layers + 1)

    def save(self, out_dir: str | Path) -> Path:
        """Write ``trace.json`` (texts, tokens, settings) and ``trace.npz`` (arrays) into ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        small = {k: v for k, v in asdict(self).items() if k not in self._ARRAYS}
        (out / TRACE_JSON).write_text(json.dumps(small, indent=1))
        arrays = {k: getattr(self, k) for k in self._ARRAYS if getattr(self, k) is not None}
        np.savez_compressed(out / TRACE_ARRAYS, **arrays)
        return out

    @classmethod
    def load(cls, out_dir: str | Path) -> "Trace":
        """Read a trace written by :meth:`save`."""
        out = Path(out_dir)
        for name in (TRACE_JSON, TRACE_ARRAYS):
            if not (out / name).is_file():
                raise FileNotFoundError(f"no {name} in {out}: not a trace folder")
        small = json.loads((out / TRACE_JSON).read_text())
        with np.load(out / TRACE_ARRAYS) as arrays:
            small.update({k: arrays[k] for k in arrays.files})
        return cls(**small)


def _watch_ids(watch_tokens, tokenizer, vocab_size: int) -> tuple[list[str], list[int]]:
    names, ids = [], []
    for item in watch_tokens or ():
        if isinstance(item, numbers.Integral):
            item = int(item)
            token_id, name = item, (tokenizer.decode([item]) if tokenizer is not None else str(item))
        else:
            if tokenizer is None:
                raise ValueError(f"watch token {item!r} is a string: pass `tokenizer` (or the processor) to map it to an id")
            pieces = tokenizer(item, add_special_tokens=False)["input_ids"]
            if not pieces:
                raise ValueError(f"watch token {item!r} encodes to no token")
            if len(pieces) > 1:
                logger.warning("watch token %r is %d tokens; watching its first token", item, len(pieces))
            token_id, name = int(pieces[0]), item
        if not 0 <= token_id < vocab_size:
            raise ValueError(f"watch token id {token_id} is out of range for vocabulary size {vocab_size}")
        names.append(name)
        ids.append(int(token_id))
    return names, ids


def _tokenizer_of(processor_or_tokenizer):
    return getattr(processor_or_tokenizer, "tokenizer", processor_or_tokenizer)


@torch.no_grad()
def trace(
    model,
    inputs: dict,
    *,
    processor=None,
    max_new_tokens: int = 64,
    top_k: int = 5,
    watch_tokens=(),
    readout: str = "normed",
    reduction: str = "sum",
    include_embeddings: bool = False,
    keep_hidden: bool = False,
    detection: DetectionConfig | None = None,
    progress: bool = False,
) -> Trace:
    """Greedy-generate and record the layer-by-layer evolution of every emitted token.

    Args:
        model: A supported HF model (see :mod:`lvlm_skip.anatomy`).
        inputs: What the processor / tokenizer returned (``input_ids``, ``attention_mask``,
            ``pixel_values``, ...), on the model's device.
        processor: Processor or tokenizer, for decoding tokens and mapping watch words to ids.
        max_new_tokens: Generation length limit.
        top_k: Tokens kept per layer and step (1..vocab).
        watch_tokens: Words (first token watched) or token ids whose probability is recorded at
            every layer, e.g. ``["red", "black"]``.
        readout: ``"normed"`` (faithful) or ``"raw"`` (the authors' code), see :mod:`lvlm_skip.readout`.
        reduction: ``"sum"`` (the JSD) or ``"mean"`` (the authors' code), see
            :func:`lvlm_skip.divergence.js_divergence`.
        include_embeddings: Keep the ``j = 0`` (embeddings) readout rows.
        keep_hidden: Keep the predicting position's hidden vector at every depth (for t-SNE).
        detection: Critical / mutation thresholds.
        progress: Show a progress bar over the generated steps' readouts.

    Returns:
        A :class:`Trace`.
    """
    anatomy = ModelAnatomy.from_model(model)
    check_readout(readout)
    detection = detection or DetectionConfig()
    if not isinstance(top_k, int) or not 1 <= top_k <= anatomy.vocab_size:
        raise ValueError(f"`top_k` (={top_k}) has to be between 1 and the vocabulary size {anatomy.vocab_size}")
    tokenizer = _tokenizer_of(processor)
    watch_names, watch_ids = _watch_ids(watch_tokens, tokenizer, anatomy.vocab_size)
    prompt_length = inputs["input_ids"].shape[1]

    # 1. greedy generation with the model's own generate, recording the last position per forward
    with record_last_position_states(anatomy) as recorder:
        sequences = model.generate(
            **inputs, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1, use_cache=True
        )
    generated = sequences[:, prompt_length:].cpu()
    num_steps = generated.shape[1]
    if len(recorder.calls) < num_steps:
        raise RuntimeError(f"recorded {len(recorder.calls)} forward passes for {num_steps} generated tokens")

    # 2. per step: full-vocabulary readout of every layer, reduced at once to small arrays
    first = 0 if include_embeddings else 1
    watch_index = torch.tensor(watch_ids, dtype=torch.long)
    per_step = {k: [] for k in ("token_probs", "topk_ids", "topk_probs", "watch_probs", "jsd", "top1_changed")}
    steps = range(num_steps)
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc="readout", unit="step")
    for t in steps:
        states = recorder.calls[t]  # shape: (L + 1, batch, hidden)
        logp = stack_layer_logprobs(anatomy, states, readout=readout).cpu()  # shape: (L + 1, batch, vocab)
        token = generated[:, t]
        per_step["token_probs"].append(logp[first:, torch.arange(logp.shape[1]), token].exp().T)
        top = logp[first:].topk(top_k, dim=-1)
        per_step["topk_ids"].append(top.indices.transpose(0, 1))
        per_step["topk_probs"].append(top.values.exp().transpose(0, 1))
        per_step["watch_probs"].append(logp[first:, :, watch_index].exp().transpose(0, 1))
        per_step["jsd"].append(adjacent_js_divergence(logp, reduction=reduction).T)  # shape: (batch, L)
        per_step["top1_changed"].append(adjacent_top1_changes(logp).T)
    arrays = {k: torch.stack(v, dim=1) for k, v in per_step.items()}  # shape: (batch, steps, ...)

    # 3. detection on every step's curve, and the decoded tokens
    found = detect_layers(arrays["jsd"], arrays["top1_changed"], detection)
    eos_ids = _eos_ids(model)
    lengths = []
    for row in generated.tolist():
        end = next((i + 1 for i, tok in enumerate(row) if tok in eos_ids), len(row))
        lengths.append(end)
    tokens = [[tokenizer.decode([tok]) if tokenizer is not None else str(tok) for tok in row[:n]] for row, n in zip(generated.tolist(), lengths)]
    texts = [tokenizer.decode(row[:n], skip_special_tokens=True) if tokenizer is not None else "" for row, n in zip(generated.tolist(), lengths)]
    hidden = None
    if keep_hidden:
        hidden = torch.stack(recorder.calls[:num_steps], dim=0).permute(2, 0, 1, 3).to(torch.float16).cpu().numpy()
    meta = {
        "model_class": type(model).__name__,
        "name_or_path": getattr(model.config, "_name_or_path", ""),
        "num_layers": anatomy.num_layers,
        "vocab_size": anatomy.vocab_size,
        "first_layer": first,
        "readout": readout,
        "reduction": reduction,
        "top_k": top_k,
        "detection": asdict(detection),
        "prompt_length": int(prompt_length),
    }
    return Trace(
        token_ids=generated.numpy(),
        lengths=np.asarray(lengths, dtype=np.int64),
        tokens=tokens,
        texts=texts,
        token_probs=arrays["token_probs"].numpy(),
        topk_ids=arrays["topk_ids"].numpy(),
        topk_probs=arrays["topk_probs"].numpy(),
        watch_probs=arrays["watch_probs"].numpy(),
        jsd=arrays["jsd"].numpy(),
        top1_changed=arrays["top1_changed"].numpy(),
        critical=found.critical.numpy(),
        mutation=found.mutation.numpy(),
        watch_tokens=watch_names,
        watch_token_ids=watch_ids,
        meta=meta,
        hidden=hidden,
    )


def _eos_ids(model) -> set[int]:
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if eos is None:
        eos = getattr(model.config.get_text_config(), "eos_token_id", None)
    if eos is None:
        return set()
    return {int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos])}
