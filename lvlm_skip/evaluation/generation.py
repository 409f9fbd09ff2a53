"""Answering requests: images and prompts in, greedy texts out, for one variant, a batch at a time.

:func:`load_generator` loads the model once (:func:`lvlm_skip.inputs.models.load_model`) and returns a
:class:`ModelGenerator`. Its :meth:`~ModelGenerator.generate_batch` answers a batch of (image,
prompt) pairs in one left-padded ``generate`` call; calling it, ``generator(image, prompt, label)``,
answers one. It wraps the model for the requested variant (``none`` is the stock model), formats the
prompt with the processor's chat template (:func:`lvlm_skip.inputs.models.chat_prompt`) and decodes
greedily. Layer numbers in the variants' options are checked against the model when it is loaded,
before any generation.

**Rows that ask about one image share its prefill.** When a batch holds several questions about one image (POPE's six
per image, AMBER's discriminative queries), the image's prefix runs once and its K/V are copied to those rows
(:mod:`lvlm_skip.prefixes`); the prefix forward is the stock model's, which is what every variant but VCD, static
skips at every position and measured static skips runs at those positions (the others decode the usual way).

**A row's answer does not depend on its batch.** Every variant and peer decides per row (the
batch matrix, ``tests/test_batch_matrix.py``, and ``tests/test_batched_evaluation.py`` check it in
float32), and a row's text, token count and layers skipped are cut at its own end of sequence, so
the batch size is not part of a run's fingerprint. In reduced precision, padding can change a
row's arithmetic and so, rarely, a greedy choice: ``lvlm-skip speed --batch-size`` gives the
agreement rate.

The runner looks :func:`load_generator` up at call time, so tests replace it (``monkeypatch``)
with a fake generator: a callable ``generator(image, prompt, label) -> Generation`` is enough (the
runner then answers one item at a time), and one with ``generate_batch`` gets batches.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import lvlm_skip  # the package's lazy names: wrap loads torch only when called

from ..errors import InputError, one_line
from .variants import VariantPlan, wrap_arguments

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Generation:
    """One generated answer.

    Attributes:
        text: The decoded new tokens, stripped.
        new_tokens: Number of generated tokens.
        seconds: Wall time of ``generate`` (synchronised on CUDA), in seconds.
        layers_skipped: Mean decoder layers skipped per decoding step (0 for ``none``; ``None``: unknown).
    """

    text: str
    new_tokens: int
    seconds: float
    layers_skipped: float | None = None


class Generator(Protocol):
    """What the runner calls: ``generator(image, prompt, label) -> Generation``.

    A generator may also have ``generate_batch(images, prompts, label) -> list[Generation]`` (one
    ``generate`` call for the batch) and ``prompt_length(prompt) -> int`` (tokens, to sort items by):
    the runner uses them when they are there (:func:`answer_batch`).
    """

    def __call__(self, image: Any, prompt: str, label: str) -> Generation: ...


def answer_batch(generator: Generator, images: Sequence[Any], prompts: Sequence[str], label: str,
                 seeds: Sequence[int] | None = None) -> list[Generation]:
    """``generator``'s answers to a batch: one ``generate_batch`` call, or one call per row when it has none.

    ``seeds``: one sampling seed per row, for a variant that samples (``None`` otherwise).
    """
    batched = getattr(generator, "generate_batch", None)
    if batched is not None:
        return list(batched(images, prompts, label, seeds) if seeds is not None else batched(images, prompts, label))
    return [generator(image, prompt, label) for image, prompt in zip(images, prompts)]


#: The largest batch that ``batch_size="auto"`` tries on CUDA.
AUTO_BATCH_CAP = 32


@dataclass(frozen=True)
class GenerationSettings:
    """How answers are generated (every field is part of the run's fingerprint except ``device_map``).

    Attributes:
        model: A local model folder or a built-in model name.
        device: Resolved device name (``cpu``, ``cuda``, ``cuda:1``).
        dtype: Resolved parameter dtype name (``float32``, ``bfloat16``, ``float16``).
        device_map: ``from_pretrained``'s ``device_map`` (shards a large model), or ``None``.
        max_new_tokens: Generation length limit (>= 1); decoding is greedy.
        batch_size: Items per ``generate`` call (>= 1), or ``None`` for automatic: 1 on CPU; on CUDA,
            the largest power of two up to :data:`AUTO_BATCH_CAP` whose longest batch fits in memory
            (:meth:`ModelGenerator.fit_batch_size`). Not part of the fingerprint: answers do not
            depend on it (see the module docstring).
    """

    model: str
    device: str
    dtype: str
    device_map: str | None
    max_new_tokens: int
    batch_size: int | None = 1

    def __post_init__(self) -> None:
        if self.batch_size is not None and (not isinstance(self.batch_size, int) or self.batch_size < 1):
            raise InputError(f"batch_size must be a positive integer or None (automatic), got {self.batch_size!r}")

    def fingerprint(self) -> dict[str, Any]:
        """The answer-changing part: length limit, decoding, dtype, device type."""
        return {"max_new_tokens": self.max_new_tokens, "decoding": "greedy", "dtype": self.dtype,
                "device_type": self.device.split(":")[0]}


class ModelGenerator:
    """Greedy answers of a loaded model for each variant of a :class:`VariantPlan`, a batch at a time.

    Args:
        model: A model loaded by :func:`lvlm_skip.inputs.models.load_model`.
        processor: Its processor.
        plan: The variants (and their options) that will be asked for.
        max_new_tokens: Generation length limit.

    Raises:
        InputError: an option the model rejects (a layer out of range), named with its variant.
    """

    def __init__(self, model: Any, processor: Any, plan: VariantPlan, max_new_tokens: int) -> None:
        from ..anatomy import ModelAnatomy, eos_token_ids  # on the --help import path, which loads no torch
        from ..inputs.models import tokenizer_of  # as above

        self.model, self.processor, self.plan, self.max_new_tokens = model, processor, plan, max_new_tokens
        for spec in plan.specs:  # layer numbers are checked against the model before any generation
            if spec.variant != "none":
                self._wrap(spec.label)
                lvlm_skip.unwrap(model)
        self._label: str | None = None
        self._warm = False
        self._noted: set[str] = set()
        self._tokenizer = tokenizer_of(processor)
        self._eos = eos_token_ids(model)
        self._cache_argument = ModelAnatomy.from_model(model).model_cache_argument
        pad = getattr(self._tokenizer, "pad_token_id", None)
        # stated, so that generate does not warn per call that it sets one
        self._pad = pad if pad is not None else (min(self._eos) if self._eos else None)

    def _wrap(self, label: str) -> None:
        try:
            lvlm_skip.wrap(self.model, **wrap_arguments(self.plan, label))
        except (TypeError, ValueError) as exc:
            raise InputError(f"variant {label!r}: {one_line(exc)}") from None

    def _use(self, label: str) -> None:
        if label == self._label:
            return
        if lvlm_skip.is_wrapped(self.model):
            lvlm_skip.unwrap(self.model)
        self._label = None
        if self.plan.spec(label).variant != "none":
            self._wrap(label)
        self._label = label

    def prompt_length(self, prompt: str) -> int:
        """The prompt's length in tokens (without the chat template and image): what the runner sorts items by."""
        return len(self._tokenizer(prompt, add_special_tokens=False)["input_ids"])

    def __call__(self, image: Any, prompt: str, label: str) -> Generation:
        return self.generate_batch([image], [prompt], label)[0]

    def generate_batch(self, images: Sequence[Any], prompts: Sequence[str], label: str,
                       seeds: Sequence[int] | None = None) -> list[Generation]:
        """Answer every (image, prompt) pair in one left-padded ``generate`` call.

        Each row's answer is cut at its first end-of-sequence token (kept in ``new_tokens``, as
        ``generate`` keeps it at batch 1), its ``layers_skipped`` counts its own steps only, and its
        ``seconds`` is the batch's wall time divided among the rows. On CUDA, a batch that runs out of
        memory is answered as two halves.

        A variant whose :class:`~lvlm_skip.evaluation.variants.Decoding` samples answers its rows one
        at a time, each after seeding torch with its entry of ``seeds`` (one per row, required), so a
        row's sample does not depend on the batch it came in.
        """
        if len(images) != len(prompts) or not prompts:
            raise ValueError(f"generate_batch needs as many images as prompts (>= 1), got {len(images)} and {len(prompts)}")
        decoding = self.plan.decoding.get(label)
        if decoding is not None and decoding.sample:
            if seeds is None or len(seeds) != len(prompts):
                raise ValueError(f"{label} samples: generate_batch needs one seed per row")
            return [self._generate([image], [prompt], label, seed)[0]
                    for image, prompt, seed in zip(images, prompts, seeds)]
        if self.plan.spec(label).draft is not None:  # speculative decoding verifies one sequence at a time
            return [self._generate([image], [prompt], label, None)[0] for image, prompt in zip(images, prompts)]
        return self._generate(images, prompts, label, None)

    def _generate(self, images: Sequence[Any], prompts: Sequence[str], label: str, seed: int | None) -> list[Generation]:
        """One ``generate`` call for the rows (see :meth:`generate_batch`); ``seed`` seeds torch just before it."""
        import torch  # on the --help import path, which loads no torch

        from ..inputs.models import chat_prompt, encode_inputs  # on the --help import path, which loads no torch
        from ..tracing import row_lengths  # as above

        self._use(label)
        decoding = self.plan.decoding.get(label)
        max_new_tokens = decoding.max_new_tokens if decoding and decoding.max_new_tokens else self.max_new_tokens
        texts = [chat_prompt(self.processor, prompt, with_image=True) for prompt in prompts]
        inputs = encode_inputs(self.processor, texts, list(images), self.model)
        synchronize = torch.cuda.synchronize if self.model.device.type == "cuda" else (lambda: None)
        options = dict(decoding.generate_kwargs() if decoding else {"do_sample": False}, pad_token_id=self._pad)
        shared = self._shared_prefixes(inputs, label) if len(prompts) > 1 else None
        prompt_inputs = inputs if shared is None else {"input_ids": shared.input_ids,
                                                       "attention_mask": shared.attention_mask}
        try:
            if not self._warm:  # one untimed call: the first variant must not pay the warm-up
                with torch.inference_mode():
                    self.model.generate(**inputs, max_new_tokens=min(2, max_new_tokens), do_sample=False,
                                        pad_token_id=self._pad)
                self._warm = True
            if seed is not None:
                torch.manual_seed(seed)  # every device's generator
            synchronize()
            start = time.perf_counter()
            with torch.inference_mode(), _quiet(_CONTROLLER_LOGGER):  # its per-row notes would be per-item noise
                if shared is None:
                    options.update(self._reserved_cache(inputs, max_new_tokens))
                else:
                    options[self._cache_argument] = self._prefix_cache(shared, inputs, label, max_new_tokens)
                out = self.model.generate(**prompt_inputs, max_new_tokens=max_new_tokens, **options)
            synchronize()
        except torch.cuda.OutOfMemoryError:
            if len(prompts) == 1:
                raise
            del inputs
            torch.cuda.empty_cache()
            half = len(prompts) // 2
            logger.warning("a batch of %d ran out of GPU memory: answering it as %d + %d", len(prompts), half,
                           len(prompts) - half)
            return (self._generate(images[:half], prompts[:half], label, None)
                    + self._generate(images[half:], prompts[half:], label, None))
        seconds = (time.perf_counter() - start) / len(prompts)
        new = out[:, prompt_inputs["input_ids"].shape[1]:].cpu()  # shape: (batch, new tokens)
        lengths = row_lengths(new, self._eos)
        report = lvlm_skip.last_report(self.model) if self.plan.spec(label).variant != "none" else None
        notes = list(getattr(report, "notes", ()) or ())
        if notes and label not in self._noted:  # once per variant, not once per item
            self._noted.add(label)
            logger.info("%s: %s (further rows like it are not logged; layers_skipped counts them)", label, notes[0])
        answers = []
        for row, length in enumerate(lengths):
            text = self.processor.decode(new[row, :length], skip_special_tokens=True).strip()
            skipped = 0.0 if report is None else report.row_layers_skipped(row, length)
            answers.append(Generation(text=text, new_tokens=length, seconds=seconds, layers_skipped=float(skipped)))
        return answers

    def shares_image_prefixes(self, label: str) -> bool:
        """Whether ``label``'s rows that ask about one image share its prefill (:mod:`lvlm_skip.prefixes`): the
        variant accepts a cached stock prefix (:func:`lvlm_skip.wrapping.accepts_cached_prefix`) and decodes a batch
        at once (not sampled, not speculative). The runner then sorts a variant's items by image before prompt length."""
        from ..wrapping import accepts_cached_prefix  # on the --help import path, which loads no torch

        decoding = self.plan.decoding.get(label)
        if (decoding is not None and decoding.sample) or self.plan.spec(label).draft is not None:
            return False
        self._use(label)
        return accepts_cached_prefix(self.model)

    def _shared_prefixes(self, inputs: dict, label: str):
        """The batch's :class:`~lvlm_skip.prefixes.SharedPrefixBatch`, or ``None``: the model or the variant cannot
        share (:func:`lvlm_skip.anatomy.shares_prefixes`, :meth:`shares_image_prefixes`) or no two rows share."""
        from ..anatomy import placeholder_token_ids, shares_prefixes  # on the --help import path, which loads no torch
        from ..prefixes import share_prefixes  # as above

        if not shares_prefixes(self.model, inputs) or not self.shares_image_prefixes(label):
            return None
        pad = self._pad if self._pad is not None else 0
        return share_prefixes(inputs["input_ids"], inputs["attention_mask"], inputs["pixel_values"],
                              placeholder_token_ids(self.model), pad)

    def _prefix_cache(self, shared, inputs: dict, label: str, max_new_tokens: int):
        """The distinct prefixes' K/V from the stock model (the variant is unwrapped for that one forward), copied
        to the rows, with room for the suffixes and ``max_new_tokens``."""
        from ..anatomy import shared_prefix_cache  # on the --help import path, which loads no torch

        if lvlm_skip.is_wrapped(self.model):
            lvlm_skip.unwrap(self.model)
            self._label = None
        cache = shared_prefix_cache(self.model, shared, inputs["pixel_values"],
                                    shared.input_ids.shape[1] + max_new_tokens)
        self._use(label)
        return cache

    def fit_batch_size(self, images: Sequence[Any], prompts: Sequence[str], label: str,
                       cap: int = AUTO_BATCH_CAP) -> int:
        """The batch size of ``batch_size=None``: 1 off CUDA; on CUDA, grow until out of memory, then back off once.

        Tries batches of 1, 2, 4, ... (at most ``cap``) of the longest of the given requests, each
        generating ``max_new_tokens`` tokens (the cache at its longest), and returns the largest
        that fit. The choice is logged.
        """
        import torch  # on the --help import path, which loads no torch

        if self.model.device.type != "cuda":
            return 1
        longest = max(range(len(prompts)), key=lambda i: self.prompt_length(prompts[i]))
        fits, size = 0, 1
        while size <= cap:
            try:
                self._probe(images[longest], prompts[longest], label, size)
            except torch.cuda.OutOfMemoryError:
                torch.cuda.empty_cache()
                break
            fits, size = size, size * 2
        if not fits:
            raise InputError(f"{label}: one request of {self.max_new_tokens} new tokens "
                             "does not fit in GPU memory")
        logger.info("batch size: %d (automatic: the largest power of two up to %d whose longest batch fits in "
                    "GPU memory; --batch-size sets it)", fits, cap)
        return fits

    def _probe(self, image: Any, prompt: str, label: str, size: int) -> None:
        """One batch of ``size`` copies of a request, generating exactly ``max_new_tokens`` tokens."""
        import torch  # on the --help import path, which loads no torch

        from ..inputs.models import chat_prompt, encode_inputs  # on the --help import path, which loads no torch

        self._use(label)
        text = chat_prompt(self.processor, prompt, with_image=True)
        inputs = encode_inputs(self.processor, [text] * size, [image] * size, self.model)
        with torch.inference_mode():  # the cache a batch holds, so that the probe needs the memory a batch needs
            self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, min_new_tokens=self.max_new_tokens,
                                do_sample=False, pad_token_id=self._pad,
                                **self._reserved_cache(inputs, self.max_new_tokens))

    def _reserved_cache(self, inputs: dict, max_new_tokens: int) -> dict:
        """``generate``'s cache argument: a cache with room for the prompt and ``max_new_tokens``
        (:func:`lvlm_skip.anatomy.reserved_cache`), appended in place instead of copied at every step."""
        from ..anatomy import reserved_cache  # on the --help import path, which loads no torch

        return {self._cache_argument: reserved_cache(self.model, inputs["input_ids"].shape[1] + max_new_tokens)}


#: The skip controller's logger: it notes, per generate call, rows that skip nothing.
_CONTROLLER_LOGGER = "lvlm_skip.skips.controller"


@contextmanager
def _quiet(name: str):
    """``name``'s logger at WARNING for the block (its INFO notes are collected from the report instead)."""
    quieted = logging.getLogger(name)
    level = quieted.level
    quieted.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        quieted.setLevel(level)


def load_generator(settings: GenerationSettings, plan: VariantPlan, progress: bool = False) -> Generator:
    """Load ``settings.model`` and return its :class:`ModelGenerator`.

    Raises:
        InputError: the model cannot be loaded (:class:`~lvlm_skip.inputs.models.ModelLoadError`), is not
            supported, or rejects a variant's options.
    """
    from ..inputs.models import load_model, resolve_device, resolve_dtype  # on the --help import path, which loads no torch

    device = resolve_device(settings.device)
    model, processor = load_model(settings.model, dtype=resolve_dtype(settings.dtype, device), device=device,
                                  device_map=settings.device_map, progress=progress)
    logger.info("loaded %s (%s, %s)", settings.model, model.device, model.dtype)
    return ModelGenerator(model, processor, plan, settings.max_new_tokens)
