"""Trace a greedy generation layer by layer: the paper's three levels of analysis in one record.

:func:`trace` runs the model's own ``generate`` (greedy) with hooks that keep the last position's
residual state at every depth, then reads every layer out over the full vocabulary, one step at a
time, and keeps only what is small: per step and layer the emitted token's probability, the top-k,
the watch tokens, the late-window competitors and the adjacent-layer divergence. Memory is
O(steps x layers x k), never O(vocab), except the optional hidden vectors
(O(steps x layers x hidden)) used for the t-SNE figures. :func:`trace_readouts` generates once and
reads the same states out with several (readout, reduction) settings, e.g. the faithful one and the
authors' one.

**Competitors** (the paper's Fig. 2/3; the authors' ``plot_token_probabilities_area.py`` plots, per
step, every token that is top-1 at some layer of layers 20..32 of LLaVA-1.5-7B): per step, the
*late window* is layers ``w..L``, where ``w`` is ``competitor_window`` when given, else the step's
detected critical layer, else (no critical layer detected) ``round(20 / 32 * L)``, the authors'
fixed window scaled to the model's depth. The competitors are the distinct tokens that are top-1 at
some layer of the window: the emitted token first (greedy: top-1 at ``L``), then by their largest
probability in the window, at most ``max_competitors``. Their probabilities are kept at every
readout layer.
"""

from __future__ import annotations

import json
import logging
import numbers
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .anatomy import ModelAnatomy, eos_token_ids
from .config import ReadoutName, Reduction
from .detection import DetectionConfig, detect_layers
from .divergence import adjacent_js_divergence, adjacent_top1_changes, check_reduction
from .errors import InputError
from .hooks import record_last_position_states
from .inputs.models import tokenizer_of
from .readout import Lens, check_readout, get_lens, stack_layer_logits

logger = logging.getLogger(__name__)

TRACE_JSON = "trace.json"
TRACE_ARRAYS = "trace.npz"
#: The authors' late window for Fig. 2/3 starts at layer 20 of LLaVA-1.5-7B's 32 (and of 13B's 40).
AUTHORS_WINDOW_FRACTION = 20 / 32


@dataclass
class Trace:
    """What a traced generation produced. Arrays are batch-first numpy arrays.

    Readout rows are ``j = first_layer..L`` (``first_layer`` is 0 when the embeddings were requested,
    else 1); ``R = L + 1 - first_layer`` rows. Divergences and detection always cover layers ``1..L``.

    Attributes:
        token_ids: `(batch, steps)` int64 emitted tokens (pad after a row's end).
        lengths: `(batch,)` number of generated tokens per row, EOS included.
        tokens: Decoded text of each emitted token, per row (``lengths[b]`` entries).
        texts: The generated text per row.
        token_probs: `(batch, steps, R)` probability of the emitted token at each readout.
        topk_ids: `(batch, steps, R, k)` top-k token ids at each readout.
        topk_probs: `(batch, steps, R, k)` their probabilities.
        watch_probs: `(batch, steps, R, W)` probabilities of the watch tokens.
        jsd: `(batch, steps, L)` adjacent-layer divergence, ``jsd[..., j - 1] = D(p_{j-1}, p_j)`` in
            nats, ``D`` as ``meta["reduction"]`` (:mod:`lvlm_skip.divergence`; float32 for ``"sum"``,
            float64 for ``"paper"``).
        top1_changed: `(batch, steps, L)` bool, top-1 of ``p_j`` differs from ``p_{j-1}``.
        critical: `(batch, steps)` detected critical layer (0 = none).
        mutation: `(batch, steps, L)` bool detected mutation layers.
        watch_tokens: Names of the watch tokens; ``watch_token_ids`` their ids.
        meta: Settings and model facts (num_layers, vocab_size, readout, reduction, detection,
            competitor window, ...).
        hidden: Optional `(batch, steps, L + 1, hidden)` float16 un-normed states ``h_0..h_L`` of the
            predicting position.
        hidden_final: Optional `(batch, steps, hidden)` float16 ``final_norm(h_L)``: the state the LM
            head reads, which is transformers' last ``output_hidden_states`` entry.
        competitor_ids: `(batch, steps, C)` int64 late-window competitors (module docstring), -1 padded.
        competitor_probs: `(batch, steps, R, C)` float32 their probabilities, NaN where padded.
        window_start: `(batch, steps)` int64 first layer ``w`` of each step's late window.
        token_text: Decoded text of every token id that appears in the arrays above.
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
    hidden_final: np.ndarray | None = None
    competitor_ids: np.ndarray | None = None
    competitor_probs: np.ndarray | None = None
    window_start: np.ndarray | None = None
    token_text: dict[int, str] = field(default_factory=dict)

    _ARRAYS = (
        "token_ids", "lengths", "token_probs", "topk_ids", "topk_probs", "watch_probs", "jsd", "top1_changed",
        "critical", "mutation", "hidden", "hidden_final", "competitor_ids", "competitor_probs", "window_start",
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

    def token_name(self, token_id: int) -> str:
        """Decoded text of ``token_id`` (its number where the trace did not decode it)."""
        return self.token_text.get(int(token_id), str(int(token_id)))

    def probabilities(self, token: int | str, step: int, row: int = 0) -> np.ndarray:
        """`(R,)` probability of ``token`` at every readout layer of ``step``, where the trace recorded it.

        Args:
            token: A token id, or a word: a watch token's name, or the text of a competitor or
                watch token at that step (compared without surrounding spaces).
            step: Generation step (0-based).
            row: Batch row.

        Raises:
            KeyError: the token is neither a watch token nor one of the step's late-window
                competitors, so its probability was not kept.
        """
        def matches(token_id: int, name: str | None = None) -> bool:
            if isinstance(token, numbers.Integral):
                return int(token) == token_id
            return token == name or token.strip() == self.token_name(token_id).strip()

        for w, token_id in enumerate(self.watch_token_ids):
            if matches(token_id, self.watch_tokens[w]):
                return self.watch_probs[row, step, :, w]
        if self.competitor_ids is not None:
            for c, token_id in enumerate(self.competitor_ids[row, step].tolist()):
                if token_id >= 0 and matches(token_id):
                    return self.competitor_probs[row, step, :, c]
        raise KeyError(
            f"token {token!r} was not recorded at step {step}: it is neither a watch token nor a late-window "
            f"competitor there; trace again with it among the watch tokens"
        )

    def row(self, b: int, watch_tokens: Sequence[str] | None = None) -> "Trace":
        """Row ``b`` of a batched trace as a one-row trace, cut to its own ``lengths[b]`` steps.

        A batch runs until its longest row ends, so the other rows' arrays have padding steps after
        their end; this leaves them out, so that the row equals the trace of its prompt traced alone
        (tested). ``watch_tokens`` keeps only those watch tokens (a batch watches the union of what
        its rows watch), in the order given.
        """
        if not 0 <= b < len(self.lengths):
            raise ValueError(f"row {b} is out of range for a trace of {len(self.lengths)} row(s)")
        n = int(self.lengths[b])
        keep = list(range(len(self.watch_tokens)))
        if watch_tokens is not None:
            missing = [w for w in watch_tokens if w not in self.watch_tokens]
            if missing:
                raise ValueError(f"watch token(s) {missing} are not in this trace (it watches {self.watch_tokens})")
            keep = [self.watch_tokens.index(w) for w in watch_tokens]
        arrays = {}
        for name in self._ARRAYS:
            value = getattr(self, name)
            if value is None:
                arrays[name] = None
            elif name == "lengths":
                arrays[name] = value[b:b + 1].copy()
            else:
                arrays[name] = value[b:b + 1, :n].copy()
        arrays["watch_probs"] = arrays["watch_probs"][..., keep]
        return replace(self, **arrays, tokens=[list(self.tokens[b])], texts=[self.texts[b]],
                       watch_tokens=[self.watch_tokens[i] for i in keep],
                       watch_token_ids=[self.watch_token_ids[i] for i in keep], meta=dict(self.meta),
                       token_text=dict(self.token_text))

    def save(self, out_dir: str | Path) -> Path:
        """Write ``trace.json`` (texts, tokens, settings) and ``trace.npz`` (arrays) into ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        small = {k: v for k, v in asdict(self).items() if k not in self._ARRAYS}
        small["token_text"] = {str(k): v for k, v in self.token_text.items()}
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
        small["token_text"] = {int(k): v for k, v in small.get("token_text", {}).items()}
        with np.load(out / TRACE_ARRAYS) as arrays:
            small.update({k: arrays[k] for k in arrays.files})
        return cls(**small)


def resolve_watch_tokens(watch_tokens, tokenizer, vocab_size: int) -> tuple[list[str], list[int]]:
    """Names and ids of watch tokens given as words (first token watched) or token ids.

    Raises:
        InputError: a word that encodes to nothing or that the tokenizer maps to its unknown token
            (``<unk>``: the word is not in the vocabulary), an id out of range, or a word without
            a tokenizer.
    """
    names, ids = [], []
    unk_id = getattr(tokenizer, "unk_token_id", None)
    for item in watch_tokens or ():
        if isinstance(item, numbers.Integral):
            token_id = int(item)
            name = tokenizer.decode([token_id]) if tokenizer is not None and 0 <= token_id < vocab_size else str(token_id)
        else:
            if tokenizer is None:
                raise InputError(f"watch token {item!r} is a string: pass `tokenizer` (or the processor) to map it to an id")
            pieces = tokenizer(item, add_special_tokens=False)["input_ids"]
            if not pieces:
                raise InputError(f"watch token {item!r} encodes to no token")
            if unk_id is not None and unk_id in pieces and item.strip() != getattr(tokenizer, "unk_token", None):
                raise InputError(
                    f"watch word {item!r} is not in the vocabulary: the tokenizer maps it to {tokenizer.unk_token}"
                )
            if len(pieces) > 1:
                logger.warning("watch token %r is %d tokens; watching its first token", item, len(pieces))
            token_id, name = int(pieces[0]), item
        if not 0 <= token_id < vocab_size:
            raise InputError(f"watch token id {token_id} is out of range for vocabulary size {vocab_size}")
        names.append(name)
        ids.append(token_id)
    return names, ids


@torch.no_grad()
def trace(model, inputs: dict, *, readout: ReadoutName | Lens = "normed", reduction: Reduction = "sum", **options) -> Trace:
    """Greedy-generate and record the layer-by-layer evolution of every emitted token.

    Args:
        model: A supported HF model (see :mod:`lvlm_skip.anatomy`).
        inputs: What the processor / tokenizer returned (``input_ids``, ``attention_mask``,
            ``pixel_values``, ...), on the model's device.
        readout: ``"normed"`` (faithful), ``"raw"`` (the authors' code) or any
            :class:`~lvlm_skip.readout.Lens`, see :mod:`lvlm_skip.readout`.
        reduction: ``"sum"`` (the JSD) or ``"paper"`` (the authors' formula), see
            :mod:`lvlm_skip.divergence`.
        **options: The other keyword arguments of :func:`trace_readouts`.

    Returns:
        A :class:`Trace`.
    """
    return trace_readouts(model, inputs, settings=[(readout, reduction)], **options)[0]


@torch.no_grad()
def trace_readouts(
    model,
    inputs: dict,
    *,
    settings=(("normed", "sum"),),
    processor=None,
    max_new_tokens: int = 64,
    top_k: int = 5,
    watch_tokens=(),
    include_embeddings: bool = False,
    keep_hidden: bool = False,
    detection: DetectionConfig | None = None,
    competitor_window: int | None = None,
    max_competitors: int = 6,
    progress: bool = False,
) -> list[Trace]:
    """Generate once, and read the recorded states out once per ``(readout, reduction)`` setting.

    Args:
        model: A supported HF model (see :mod:`lvlm_skip.anatomy`).
        inputs: What the processor / tokenizer returned, on the model's device.
        settings: ``(readout, reduction)`` pairs, e.g. ``[("normed", "sum"), ("raw", "paper")]``;
            one :class:`Trace` each, in this order.
        processor: Processor or tokenizer, for decoding tokens and mapping watch words to ids.
        max_new_tokens: Generation length limit.
        top_k: Tokens kept per layer and step (1..vocab).
        watch_tokens: Words (first token watched) or token ids whose probability is recorded at
            every layer, e.g. ``["red", "black"]``. A word outside the vocabulary is an error.
        include_embeddings: Keep the ``j = 0`` (embeddings) readout rows.
        keep_hidden: Keep the predicting position's hidden vectors (``hidden``, ``hidden_final``) for t-SNE.
        detection: Critical / mutation thresholds.
        competitor_window: First layer ``w`` (1..L) of the late window of every step; None: each
            step's detected critical layer (module docstring).
        max_competitors: Competitors kept per step (>= 1).
        progress: Show a progress bar over the generated steps' readouts.

    Returns:
        One :class:`Trace` per setting.

    Raises:
        ValueError / InputError: a setting, ``top_k``, ``competitor_window`` or ``max_competitors``
            out of range, or a watch word outside the vocabulary.
    """
    # 1. validate everything before generating
    anatomy = ModelAnatomy.from_model(model)
    settings = [(check_readout(r), check_reduction(d)) for r, d in settings]
    if not settings:
        raise ValueError("`settings` is empty: give at least one (readout, reduction) pair")
    detection = detection or DetectionConfig()
    if not isinstance(top_k, int) or not 1 <= top_k <= anatomy.vocab_size:
        raise ValueError(f"`top_k` (={top_k}) has to be between 1 and the vocabulary size {anatomy.vocab_size}")
    if competitor_window is not None:
        anatomy.check_layer(competitor_window)
    if not isinstance(max_competitors, int) or max_competitors < 1:
        raise ValueError(f"`max_competitors` (={max_competitors}) has to be a positive int")
    tokenizer = tokenizer_of(processor)
    watch_names, watch_ids = resolve_watch_tokens(watch_tokens, tokenizer, anatomy.vocab_size)
    prompt_length = inputs["input_ids"].shape[1]

    # 2. greedy generation with the model's own generate, recording the last position per forward
    with record_last_position_states(anatomy) as recorder:
        sequences = model.generate(
            **inputs, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1, use_cache=True
        )
    generated = sequences[:, prompt_length:].cpu()
    num_steps = generated.shape[1]
    if len(recorder.calls) < num_steps:
        raise RuntimeError(f"recorded {len(recorder.calls)} forward passes for {num_steps} generated tokens")
    calls = recorder.calls[:num_steps]

    # 3. what every setting shares: decoded tokens and texts, hidden vectors, settings
    lengths = row_lengths(generated, eos_token_ids(model))
    decode = (lambda ids: tokenizer.decode(ids)) if tokenizer is not None else (lambda ids: " ".join(map(str, ids)))
    tokens = [[decode([tok]) for tok in row[:n]] for row, n in zip(generated.tolist(), lengths)]
    texts = [tokenizer.decode(row[:n], skip_special_tokens=True) if tokenizer is not None else ""
             for row, n in zip(generated.tolist(), lengths)]
    hidden = hidden_final = None
    if keep_hidden and num_steps:
        stacked = torch.stack(calls)  # shape: (steps, L + 1, batch, hidden)
        hidden = stacked.permute(2, 0, 1, 3).to(torch.float16).cpu().numpy()
        hidden_final = anatomy.final_norm(stacked[:, -1]).transpose(0, 1).to(torch.float16).cpu().numpy()
    shared = dict(
        token_ids=generated.numpy(), lengths=np.asarray(lengths, dtype=np.int64), tokens=tokens, texts=texts,
        watch_tokens=watch_names, watch_token_ids=watch_ids, hidden=hidden, hidden_final=hidden_final,
    )
    first = 0 if include_embeddings else 1
    base_meta = {
        "model_class": type(model).__name__,
        "name_or_path": getattr(model.config, "_name_or_path", ""),
        "num_layers": anatomy.num_layers,
        "vocab_size": anatomy.vocab_size,
        "first_layer": first,
        "top_k": top_k,
        "detection": asdict(detection),
        "competitor_window": "critical" if competitor_window is None else competitor_window,
        "competitor_window_fallback": _fallback_window(anatomy.num_layers),
        "max_competitors": max_competitors,
        "prompt_length": int(prompt_length),
    }

    # 4. one readout pass per setting
    results = []
    for readout, reduction in settings:
        steps = range(num_steps)
        if progress:
            steps = tqdm(steps, desc=f"readout ({get_lens(readout).name}, {reduction})", unit="step")
        reader = _StepReader(anatomy, readout, reduction, first, top_k, watch_ids, detection, competitor_window,
                             max_competitors)
        per_step = [reader(calls[t], generated[:, t]) for t in steps]
        arrays = _stack_steps(per_step, generated.shape[0], anatomy.num_layers + 1 - first, top_k, len(watch_ids),
                              max_competitors, anatomy.num_layers)
        ids = {*generated.flatten().tolist(), *arrays["topk_ids"].flatten().tolist(), *watch_ids,
               *arrays["competitor_ids"].flatten().tolist()}
        token_text = {i: decode([i]) for i in sorted(ids) if i >= 0}
        meta = {**base_meta, "readout": get_lens(readout).name, "reduction": reduction}
        results.append(Trace(**shared, **arrays, meta=meta, token_text=token_text))
    return results


def _fallback_window(num_layers: int) -> int:
    return max(1, min(num_layers, round(AUTHORS_WINDOW_FRACTION * num_layers)))


class _StepReader:
    """Reads one step's recorded states out and reduces them to the small per-step arrays."""

    def __init__(self, anatomy, readout, reduction, first, top_k, watch_ids, detection, window, max_competitors):
        self.anatomy, self.readout, self.reduction, self.first = anatomy, readout, reduction, first
        self.top_k, self.detection, self.window, self.max_competitors = top_k, detection, window, max_competitors
        self.watch_index = torch.tensor(watch_ids, dtype=torch.long)
        self.fallback = _fallback_window(anatomy.num_layers)

    def __call__(self, states: torch.Tensor, token: torch.Tensor) -> dict[str, torch.Tensor]:
        """``states`` `(L + 1, batch, hidden)` of one step and the emitted ``token`` `(batch,)`."""
        first = self.first
        # 1. full-vocabulary readout of every layer; float64 for the authors' formula, as their code
        logits = stack_layer_logits(self.anatomy, states, readout=self.readout).cpu()  # shape: (L + 1, batch, vocab)
        logp = torch.log_softmax(logits.double() if self.reduction == "paper" else logits.float(), dim=-1)
        rows = torch.arange(logp.shape[1])
        top = logp[first:].topk(self.top_k, dim=-1)
        jsd = adjacent_js_divergence(logp, reduction=self.reduction).T  # shape: (batch, L)
        changed = adjacent_top1_changes(logp).T  # shape: (batch, L)
        # 2. detection of this step's curve (it decides the default late window)
        found = detect_layers(jsd, changed, self.detection)
        if self.window is not None:
            start = torch.full_like(found.critical, self.window)
        else:
            start = torch.where(found.critical > 0, found.critical, torch.full_like(found.critical, self.fallback))
        competitor_ids, competitor_probs = self._competitors(logp[first:], token, start - first)
        return {
            "token_probs": logp[first:, rows, token].exp().T,  # shape: (batch, R)
            "topk_ids": top.indices.transpose(0, 1),  # shape: (batch, R, k)
            "topk_probs": top.values.exp().transpose(0, 1),
            "watch_probs": logp[first:, :, self.watch_index].exp().transpose(0, 1),  # shape: (batch, R, W)
            "jsd": jsd,
            "top1_changed": changed,
            "critical": found.critical,
            "mutation": found.mutation,
            "competitor_ids": competitor_ids,
            "competitor_probs": competitor_probs,
            "window_start": start,
        }

    def _competitors(self, logp: torch.Tensor, token: torch.Tensor, start_row: torch.Tensor):
        """Late-window top-1 tokens of each row: `(batch, C)` ids (-1 padded), `(batch, R, C)` probabilities."""
        readouts, batch, _ = logp.shape
        ids = torch.full((batch, self.max_competitors), -1, dtype=torch.long)
        probs = torch.full((batch, readouts, self.max_competitors), float("nan"))
        top1 = logp.argmax(-1)  # shape: (R, batch)
        for b in range(batch):
            window = logp[int(start_row[b]):, b]  # shape: (window, vocab)
            candidates = top1[int(start_row[b]):, b].unique()
            peak = window[:, candidates].max(dim=0).values
            # the emitted token first, then by the largest probability in the window
            order = sorted(range(len(candidates)), key=lambda i: (int(candidates[i]) != int(token[b]), -float(peak[i])))
            chosen = candidates[order[: self.max_competitors]]
            ids[b, : len(chosen)] = chosen
            probs[b, :, : len(chosen)] = logp[:, b, chosen].exp().float()
        return ids, probs


def _stack_steps(per_step, batch, readouts, top_k, watch, max_competitors, num_layers) -> dict[str, np.ndarray]:
    """Per-step dicts -> batch-first numpy arrays `(batch, steps, ...)` (empty arrays for zero steps)."""
    empty = {
        "token_probs": (readouts,), "topk_ids": (readouts, top_k), "topk_probs": (readouts, top_k),
        "watch_probs": (readouts, watch), "jsd": (num_layers,), "top1_changed": (num_layers,), "critical": (),
        "mutation": (num_layers,), "competitor_ids": (max_competitors,), "competitor_probs": (readouts, max_competitors),
        "window_start": (),
    }
    arrays = {}
    for name, tail in empty.items():
        if per_step:
            value = torch.stack([step[name] for step in per_step], dim=1)  # shape: (batch, steps, ...)
        else:
            value = torch.zeros((batch, 0, *tail))
        if value.is_floating_point() and name != "jsd":  # the authors' divergence stays float64, as theirs
            value = value.float()
        arrays[name] = value.numpy()
    for name in ("topk_ids", "competitor_ids", "critical", "window_start"):
        arrays[name] = arrays[name].astype(np.int64)
    for name in ("top1_changed", "mutation"):
        arrays[name] = arrays[name].astype(bool)
    return arrays


def row_lengths(generated: torch.Tensor, eos_ids: Collection[int]) -> list[int]:
    """Each row's generated length: up to and including its first end-of-sequence token, else all of them.

    Args:
        generated: `(batch, new)` int token ids that ``generate`` appended (rows that ended early are
            padded after their end-of-sequence token).
        eos_ids: The ids that end a sequence.
    """
    lengths = []
    for row in generated.tolist():
        lengths.append(next((i + 1 for i, tok in enumerate(row) if tok in eos_ids), len(row)))
    return lengths


