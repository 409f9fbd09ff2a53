"""Decoding speed of every variant and mode versus the stock model, measured side by side.

    lvlm-skip speed                            # bench-llava: LLaVA-1.5-7B's shape scaled for CPU
    lvlm-skip speed --model PATH --image IMG [--device cuda --dtype float16]
    lvlm-skip speed --model bench-llava-7b --device cuda --dtype float16      # full-size LLaVA-1.5-7B config

**Default model** (``--model bench-llava``, :func:`lvlm_skip.inputs.builtin_models.build_bench_llava`):
``LlavaForConditionalGeneration`` with LLaVA-1.5-7B's shape scaled for a CPU (32 Llama layers, 576
visual tokens, width 512, MLP 1376, a 4000-token vocabulary so that the LM head costs the same 0.65
of a layer as in 7B), with random weights edited so that its curves look like LLaVA's: a high
shallow stage, a critical layer at 18, quiet layers after it, loud mutation layers 27 and 30 that
fire on most tokens, and a large last-layer change. The detector finds them (tested), so online
mode decides on it as it would on a real model. Absolute times are not comparable with a 7B model.

**Layers.** The static rows and online skip1 take their layers from ``--profile`` if given, else
from the model's known plan (bench-llava: critical 18, mutations 27 and 30; any other model: the
paper's LLaVA-1.5-7B choices, critical 18 and deep layers 27-30, scaled to its depth).

**Method.** Every configuration runs ``generate`` with exactly ``--new-tokens`` tokens (EOS
suppressed); a streamer stamps each token, giving the prefill time (call start -> first token) and
the duration of every decoding step (token ``t - 1`` -> token ``t``). Configurations are interleaved
run by run (stock, A, B, ..., stock, A, B, ...), ``--runs`` times after one warm-up round. A row's step
time is, by ``--statistic`` (:func:`step_time`), ``min`` (the default): every run makes the same
greedy tokens, so step ``t`` does the same work in every run; the least of its durations over the
runs is its undisturbed cost (another process can only add time, the reasoning of :mod:`timeit`),
and the row's step time is the mean of those over the steps, so a configuration that skips on some
steps and not on others is weighed as it runs. ``median`` is the median of all steps of all runs;
both are written (``step_ms``, ``step_ms_median``). The decode rate is ``1000 / step_ms``; the
spread is ``(max - min) / median`` of the runs' own median steps, and a spread above 10% is flagged:
the machine was busy during some runs (the ``min`` statistic is built to survive that; the
``median`` is not). Speedup is the stock model's step time over the row's; the
ideal speedup of ``k`` layers skipped per step (mean) of ``L`` is ``L / (L - k)``.

**Clock.** ``--clock wall`` times elapsed time; ``--clock cpu`` (the default on a CPU device) times
the CPU time of this process, which on a shared machine leaves out the time other processes held
the cores: the figures are then the work each configuration does, and the spread shrinks. On a
CPU the benchmark runs one thread by default (``--threads``), so CPU time and elapsed time agree on
an idle machine. On CUDA the clock is the wall clock, with the device synchronised.

**Targets** (:class:`Target`, judged per row in ``met``):

* static variants reach >= 95% of their ideal;
* online detect-only (the whole online detection at every step, with thresholds that never act)
  costs <= 5% over stock;
* online exit and skip2 cost <= 5% over stock *on the steps where they skip nothing* (the step time
  of those steps against the stock model's on the same steps);
* online skip3 skips >= 4 layers per step and reaches >= 90% of its ideal.

The approximation error of the candidate-vocabulary JSD against the exact full-vocabulary JSD, and
the agreement of lagged decisions (step ``t`` acts on step ``t-1``'s critical layer) with per-step
decisions, are measured on the same prompt's steps.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, get_args

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from ..anatomy import ModelAnatomy, language_model_of
from ..config import DetectionConfig, LayerChoice, SpeculativeOptions, SpeedClock, SpeedStatistic
from ..detection import detect_layers
from ..errors import InputError
from ..inputs.builtin_models import BENCH_CRITICAL_LAYER, BENCH_LOUD_LAYERS
from ..inputs.models import chat_prompt, encode_inputs, tokenizer_of
from ..variants import VARIANTS
from ..wrapping import skipping

logger = logging.getLogger(__name__)


STATISTICS: tuple[str, ...] = get_args(SpeedStatistic)


def step_time(run_steps: Sequence[Sequence[float]], statistic: SpeedStatistic = "min", indices: Sequence[int] | None = None) -> float:
    """A configuration's time per decoding step from its timed runs (seconds).

    Args:
        run_steps: ``run_steps[r][t]``, the duration of decoding step ``t`` in run ``r``. Every run
            generates the same tokens greedily, so step ``t`` does the same work in every run.
        statistic: ``"min"``: for every step, the least of its durations over the runs, then the
            mean over steps. Another process can only add time to a step, so the least of repeated
            identical work is its undisturbed cost (the reasoning of :mod:`timeit`), and the mean
            over steps weighs every kind of step a configuration makes as often as it makes it.
            ``"median"``: the median of all durations of all runs; for a configuration that commits several
            tokens at once (a speculative row: its tokens after the first of a verify take no time of their own,
            so most steps can be 0), the median over runs of each run's mean step.
        indices: Only these steps (default: all).
    """
    if statistic not in STATISTICS:
        raise ValueError(f"`statistic` (={statistic!r}) has to be one of {STATISTICS}")
    if not run_steps or not run_steps[0]:
        raise ValueError("no step durations")
    steps = range(len(run_steps[0])) if indices is None else indices
    if not steps:
        raise ValueError("no step durations")
    if statistic == "median":
        if commits_several_tokens(run_steps):
            return statistics.median(statistics.fmean(run[t] for t in steps) for run in run_steps)
        return statistics.median(run[t] for run in run_steps for t in steps)
    return statistics.fmean(min(run[t] for run in run_steps) for t in steps)


def commits_several_tokens(run_steps: Sequence[Sequence[float]]) -> bool:
    """Whether some step took no time: its token was committed with the one before (a verify pass's accepted drafts,
    which the streamer stamps together), so per-step medians say nothing and per-run means are the step time."""
    return any(duration == 0 for run in run_steps for duration in run)


def layer_plan(model_name: str, num_layers: int, profile=None) -> LayerChoice:
    """The layers of the static rows (and online skip1's resume layer): a profile's, bench-llava's own
    plan, or the paper's LLaVA-1.5-7B layers scaled to the model's depth. Always both ``c`` and ``M``."""
    if profile is not None:
        return profile.layer_choice("profile")
    if model_name in ("bench-llava", "bench-llava-7b"):
        return LayerChoice(BENCH_CRITICAL_LAYER, tuple(BENCH_LOUD_LAYERS), source="bench-llava's layer plan")
    scale = num_layers / 32
    return LayerChoice(round(18 * scale), tuple(sorted({round(m * scale) for m in (27, 28, 29, 30)})),
                       source="the paper's LLaVA-1.5-7B layers (critical 18, deep 27-30) scaled to the model")


@dataclass(frozen=True)
class Target:
    """A row's goal: its ``metric`` (a :class:`SpeedRow` field) at most / at least ``bound``.

    Attributes:
        label: As printed (``"static >= 95% of ideal"``).
        metric: The :class:`SpeedRow` field judged.
        bound: The limit, in the metric's unit (percent).
        at_most: ``metric <= bound`` (else ``metric >= bound``).
        min_layers_skipped: Also required: at least this many layers skipped per step (mean).
    """

    label: str
    metric: str
    bound: float
    at_most: bool
    min_layers_skipped: float = 0.0
    same_tokens_as_stock: bool = False

    def met(self, row: dict) -> str:
        """``"yes"`` / ``"no"`` for ``row`` (a :class:`SpeedRow` as a dict); ``"-"`` when it cannot be measured."""
        if row.get("error"):
            return "-"
        if row.get("layers_skipped", 0.0) < self.min_layers_skipped:
            return "no"
        if self.same_tokens_as_stock and row.get("same_tokens_as_stock") is False:
            return "no"
        value = row.get(self.metric)
        if value is None:
            return "-"
        return "yes" if (value <= self.bound if self.at_most else value >= self.bound) else "no"


#: The targets of the default configurations (see the module docstring).
OVERHEAD = Target("overhead <= 3%", "overhead_pct", 3, at_most=True)
DETECT = Target("detect <= 5%", "overhead_pct", 5, at_most=True)
QUIET_STEPS = Target("quiet steps <= 5%", "quiet_overhead_pct", 5, at_most=True)
STATIC = Target("static >= 95% of ideal", "pct_of_ideal", 95, at_most=False)
ONLINE_SPAN = Target("online >= 4 layers, >= 90% of ideal", "pct_of_ideal", 90, at_most=False, min_layers_skipped=4)
#: speculative rows: the stock tokens exactly, and >= 90% of the speedup their acceptance and draft cost predict
SPECULATIVE = Target("same tokens, >= 90% of predicted", "pct_of_ideal", 90, at_most=False, same_tokens_as_stock=True)


@dataclass(frozen=True)
class SpeedConfig:
    """One benchmarked configuration.

    Attributes:
        name: Its row label (``"skip1 static"``).
        wrap: ``lvlm_skip.wrap`` keyword arguments; ``None`` is the stock model.
        target: The row's :class:`Target`, or ``None``.
    """

    name: str
    wrap: dict | None
    target: Target | None = None
    generate: dict | None = None
    """Extra ``generate`` keyword arguments (transformers' own speculative forms: ``prompt_lookup_num_tokens``)."""


@dataclass(frozen=True)
class SpeedRow:
    """The measurements of one configuration (times in milliseconds, rates per second).

    Attributes:
        config: The configuration's name.
        batch: Rows per ``generate`` call (each row its own image, the same prompt).
        layers_skipped: Median over runs of the mean layers skipped per decoding step and row.
        prefill_ms: Median time from the ``generate`` call to the first token.
        decode_tokens_per_s: ``batch * 1000 / step_ms``: tokens of all rows per second.
        step_ms: The time per decoding step (:func:`step_time`, by the run's statistic).
        step_ms_median: The median duration of a decoding step over every step of every run.
        speedup: The stock model's ``step_ms`` (at the same batch size) over this row's.
        spread_pct: ``100 * (max - min) / median`` of the runs' own median step durations (their mean step, for a
            row that commits several tokens at once: :func:`commits_several_tokens`).
        ideal: ``L / (L - layers_skipped)``.
        pct_of_ideal: ``100 * speedup / ideal``.
        overhead_pct: ``100 * (stock rate / rate - 1)``.
        quiet_steps: Decoding steps at which the configuration skipped nothing and exited nowhere in
            every run.
        quiet_overhead_pct: ``100 * (step time of those steps / the stock model's on the same steps - 1)``.
        target: The row's target, if any.
        met: ``"yes"`` / ``"no"`` against the target.
        same_tokens: At batch > 1, the share of rows whose tokens equal that row's tokens generated
            alone (1.0 in float32; reduced precision can lower it), else ``None``.
        same_tokens_as_stock: Whether the row generated exactly the stock model's tokens (its last run).
        acceptance_rate: Speculative rows: accepted / drafted tokens.
        mean_accepted: Speculative rows: draft tokens accepted per verify pass.
        draft_cost: Speculative rows: a draft forward's measured time over a stock decoding step's
            (:func:`speculative_costs`).
        verify_cost: Speculative rows: a verify pass's measured time over a stock decoding step's.
        draft_layer_share: Speculative rows: the draft's share of the layers, ``(L - |skipped|) / L``.
        ideal_memory_bound: Speculative rows: the speedup predicted from the acceptance, ``draft_layer_share`` and a
            verify pass costing one step, which is what memory-bound decoding (a GPU at batch 1) approaches
            (:attr:`lvlm_skip.speculative.SpeculativeReport.predicted_speedup`).
        pct_of_memory_bound: ``100 * speedup / ideal_memory_bound``.
        error: The one-line error of a configuration that could not run (then its figures are NaN).

    For a speculative row, ``ideal`` is the speedup that its measured acceptance, ``draft_cost`` and
    ``verify_cost`` give with no overhead (:meth:`lvlm_skip.speculative.SpeculativeReport.predicted_speedup_at`), so
    ``pct_of_ideal`` is the share of it that the whole loop reaches: the rest is the loop's own overhead (logits
    processors, cache cuts, stopping checks). When the forwards cannot be matched to the rounds, ``ideal`` is
    ``ideal_memory_bound``.
    """

    config: str
    batch: int
    layers_skipped: float
    prefill_ms: float
    decode_tokens_per_s: float
    step_ms: float
    step_ms_median: float
    speedup: float
    spread_pct: float
    ideal: float | None = None
    pct_of_ideal: float | None = None
    overhead_pct: float | None = None
    quiet_steps: int | None = None
    quiet_overhead_pct: float | None = None
    target: str | None = None
    met: str | None = None
    same_tokens: float | None = None
    same_tokens_as_stock: bool | None = None
    acceptance_rate: float | None = None
    mean_accepted: float | None = None
    draft_cost: float | None = None
    verify_cost: float | None = None
    draft_layer_share: float | None = None
    ideal_memory_bound: float | None = None
    pct_of_memory_bound: float | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_configs(plan: LayerChoice, num_layers: int, candidates: int,
                    placeholder_tokens: Sequence[int] = ()) -> list[SpeedConfig]:
    """Stock, ``none``, the static skips, detect-only, the online variants (both decision modes), the peers and the
    speculative rows (:func:`speculative_configs`; ``placeholder_tokens``: the model's image placeholders)."""
    c, mutations = plan.critical, plan.mutations
    quarter = list(range(num_layers - num_layers // 4 - 3, num_layers - 3))
    online = dict(mode="online", candidates=candidates)
    resume = dict(mutation_layers=mutations[:1])
    static = STATIC
    return [
        SpeedConfig("stock", None),
        SpeedConfig("none", dict(variant="none"), OVERHEAD),
        SpeedConfig(f"layers k={len(quarter)}", dict(variant="layers", layers=quarter), static),
        SpeedConfig("skip1 static", dict(variant="skip1", critical_layer=c, mutation_layers=mutations), static),
        SpeedConfig("skip2 static", dict(variant="skip2", mutation_layers=mutations), static),
        SpeedConfig("skip3 static", dict(variant="skip3", critical_layer=c), static),
        SpeedConfig("exit static", dict(variant="exit", exit_layer=mutations[0] - 1), static),
        SpeedConfig("skip3 static measured", dict(variant="skip3")),
        SpeedConfig(f"online detect-only (k={candidates})", dict(variant="exit", detection=DetectionConfig.never(), **online),
                    DETECT),
        SpeedConfig("online detect-only (exact)", dict(variant="exit", mode="online", candidates=0,
                                                       detection=DetectionConfig.never())),
        SpeedConfig("exit online", dict(variant="exit", **online), QUIET_STEPS),
        SpeedConfig("skip2 online", dict(variant="skip2", **online), QUIET_STEPS),
        SpeedConfig("skip3 online", dict(variant="skip3", **online), ONLINE_SPAN),
        SpeedConfig("skip1 online", dict(variant="skip1", **resume, **online)),
        SpeedConfig("skip3 online decide=step", dict(variant="skip3", decide="step", **online)),
        SpeedConfig("skip1 online decide=step", dict(variant="skip1", decide="step", **resume, **online)),
        # the decoding-time peers, at their papers' defaults (their cost: extra readouts, or a second pass)
        SpeedConfig("dola", dict(variant="dola")),
        SpeedConfig("deco", dict(variant="deco")),
        SpeedConfig("vcd", dict(variant="vcd")),
        *speculative_configs(plan, num_layers, placeholder_tokens=placeholder_tokens),
    ]


def speculative_configs(plan: LayerChoice, num_layers: int, k: int = SpeculativeOptions.k,
                        placeholder_tokens: Sequence[int] = ()) -> list[SpeedConfig]:
    """Lossless speed: self-speculative drafts from the plan's layers (skip1, skip3, exit at ``c``; skip3 and exit
    also with the heuristic and the expected-gain schedules of ``k``, and with the expected-gain schedule behind an
    n-gram lookup of :data:`LOOKUP_TOKENS`), and transformers' two built-in training-free forms, prompt lookup (of
    as many tokens) and an early-exit assistant at ``c``.

    ``placeholder_tokens`` (:func:`lvlm_skip.anatomy.placeholder_token_ids`) are suppressed in the prompt-lookup
    row: prompt lookup copies prompt n-grams as candidates, and on a vision-language model those hold the image
    placeholders, which the model's forward then counts as images and refuses; transformers' prompt lookup drops
    candidates that a logits processor forbids. A placeholder is never an answer, so this changes no token (the
    row's ``same_tokens_as_stock`` checks it)."""
    c, mutations = plan.critical, plan.mutations
    drafts = [("skip1", dict(critical_layer=c, mutation_layers=mutations)), ("skip3", dict(critical_layer=c)),
              ("exit", dict(exit_layer=c))]
    return [
        *(SpeedConfig(f"speculative {name}", dict(variant="speculative", draft=name, k=k, **options), SPECULATIVE)
          for name, options in drafts if name != "skip1" or c + 1 < mutations[0]),
        *(SpeedConfig(f"speculative {name} {schedule} k", dict(variant="speculative", draft=name, k=k,
                                                               schedule=schedule, **options), SPECULATIVE)
          for schedule in ("heuristic", "expected") for name, options in drafts[1:]),
        *(SpeedConfig(f"speculative {name} expected k + lookup", dict(variant="speculative", draft=name, k=k,
                                                                      schedule="expected", lookup=LOOKUP_TOKENS,
                                                                      **options), SPECULATIVE)
          for name, options in drafts[1:]),
        *builtin_speculative_configs(c, placeholder_tokens),
    ]


#: The most tokens an n-gram lookup proposes, ours and transformers' (``prompt_lookup_num_tokens``), in the benchmark.
LOOKUP_TOKENS = 10


def builtin_speculative_configs(exit_layer: int, placeholder_tokens: Sequence[int] = ()) -> list[SpeedConfig]:
    """transformers' two built-in training-free forms: prompt lookup (10 tokens, ``placeholder_tokens`` suppressed:
    :func:`speculative_configs`) and an early-exit assistant at ``exit_layer``."""
    lookup = dict(prompt_lookup_num_tokens=LOOKUP_TOKENS)
    if placeholder_tokens:
        lookup["suppress_tokens"] = sorted(placeholder_tokens)
    return [SpeedConfig(f"prompt lookup {LOOKUP_TOKENS}", None, generate=lookup),
            SpeedConfig(f"assistant early exit {exit_layer}", None, generate=dict(assistant_early_exit=exit_layer))]


def benchmark_inputs(model, processor, prompt: str, image, text_only: bool = False) -> tuple[Any, dict]:
    """The benchmarked model and its one prompt's inputs: ``prompt`` on ``image``, or with ``text_only`` the model's
    language model alone (:func:`lvlm_skip.anatomy.language_model_of`) on the prompt without the image (transformers'
    early-exit assistant runs only on a text model)."""
    if text_only:
        model = language_model_of(model)
        prompts = [chat_prompt(processor, prompt, with_image=False)]
        return model, encode_inputs(tokenizer_of(processor), prompts, None, model)
    return model, encode_inputs(processor, [chat_prompt(processor, prompt)], [image], model)


CLOCKS: tuple[str, ...] = get_args(SpeedClock)


class _Stamps:
    """A minimal streamer: the time of every ``put`` (the first put is the prompt), on ``clock``.

    ``"wall"`` is :func:`time.perf_counter`; ``"cpu"`` is :func:`time.process_time`, the CPU time this
    process used (all its threads): on a shared CPU machine it leaves out the time other processes
    held the cores, so it measures the work a configuration does, not the machine's load.
    """

    def __init__(self, clock: SpeedClock = "wall"):
        self.clock = time.process_time if clock == "cpu" else time.perf_counter
        self.times: list[float] = []
        self.tokens: list[list[int]] = []  # per put after the prompt: the batch's new token ids

    def put(self, value):
        """The prompt first, then per decoding step the batch's tokens `(batch,)`; transformers' assisted decoding
        puts the accepted tokens of its one row at once, `(1, m)`: m tokens, stamped together."""
        now = self.clock()
        if not self.times:  # the prompt
            self.times.append(now)
            return
        for step in ([value[:, i] for i in range(value.shape[1])] if value.dim() == 2 else [value]):
            self.times.append(now)
            self.tokens.append(step.reshape(-1).tolist())

    def end(self):
        pass


class _ForwardClock:
    """Times every call of the model's ``forward`` (its hooks) on the benchmark's clock: :attr:`durations`, in seconds,
    in call order. A speculative generate's forwards are the prefill, then per round its draft steps and one verify
    pass (:func:`speculative_costs` matches them to the rounds)."""

    def __init__(self, model, clock: Callable[[], float], sync: Callable[[], None]):
        self.model, self.clock, self.sync = model, clock, sync
        self.durations: list[float] = []
        self._start = 0.0
        self._handles: list = []

    def __enter__(self) -> "_ForwardClock":
        self._handles = [self.model.register_forward_pre_hook(self._begin),
                         self.model.register_forward_hook(self._end)]
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()

    def _begin(self, module, args) -> None:
        self.sync()
        self._start = self.clock()

    def _end(self, module, args, output) -> None:
        self.sync()
        self.durations.append(self.clock() - self._start)


def speculative_costs(run_forwards: Sequence[Sequence[float]], stock_run_forwards: Sequence[Sequence[float]],
                      drafted: Sequence[int], statistic: SpeedStatistic = "min") -> dict[str, float] | None:
    """A speculative row's measured costs in stock decoding steps: ``{"draft_cost": draft forward / step,
    "verify_cost": verify pass / step}``.

    Args:
        run_forwards: Per timed run, the durations of the row's forwards in call order (:class:`_ForwardClock`):
            the prefill, then per round ``drafted[i]`` draft forwards and one verify pass.
        stock_run_forwards: The same for the stock model: the prefill, then one forward per decoding step.
        drafted: The rounds' draft forwards (the report's :attr:`~lvlm_skip.speculative.SpeculativeReport.draft_forwards`:
            a round the n-gram lookup drafted has none; greedy, so every run drafts alike).
        statistic: As :func:`step_time`: ``"min"``, every forward's least duration over the runs, then the mean
            per kind; ``"median"``, the median per kind over all runs.

    Returns:
        ``None`` when the forwards do not match the rounds (a run of another length, a model whose generate makes
        other calls).
    """
    kinds = ["prefill"] + [kind for count in drafted for kind in ["draft"] * count + ["verify"]]
    if not run_forwards or any(len(run) != len(kinds) for run in run_forwards):
        return None
    if not stock_run_forwards or len({len(run) for run in stock_run_forwards}) != 1 or len(stock_run_forwards[0]) < 2:
        return None

    def cost(runs: Sequence[Sequence[float]], indices: Sequence[int]) -> float:
        if statistic == "median":
            return statistics.median(run[i] for run in runs for i in indices)
        return statistics.fmean(min(run[i] for run in runs) for i in indices)

    step = cost(stock_run_forwards, range(1, len(stock_run_forwards[0])))
    draft = [i for i, kind in enumerate(kinds) if kind == "draft"]
    verify = [i for i, kind in enumerate(kinds) if kind == "verify"]
    if not verify:
        return None
    return {"draft_cost": cost(run_forwards, draft) / step if draft else math.nan,
            "verify_cost": cost(run_forwards, verify) / step}


@dataclass(frozen=True)
class TimedRun:
    """One timed ``generate``: prefill seconds, step ``t``'s seconds for ``t = 1..N-1``, and each row's tokens."""

    prefill_s: float
    step_s: tuple[float, ...]
    tokens: tuple[tuple[int, ...], ...] = ()


def timed_generate(model, inputs: dict, new_tokens: int, sync: Callable[[], None], clock: str = "wall",
                   extra: dict | None = None) -> TimedRun:
    """One greedy generate of exactly ``new_tokens`` tokens, timed token by token on ``clock`` (:class:`_Stamps`).

    A speculative row commits several tokens per verify pass: they are stamped together, so their steps
    are the verify's time and zeros, and the mean over steps is the time per token."""
    stamps = _Stamps(clock)
    sync()
    start = stamps.clock()
    model.generate(**inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, streamer=stamps,
                   **(extra or {}))
    sync()
    token_times = stamps.times[1:]  # [0] is the prompt; [t] is generated token t
    steps = tuple(b - a for a, b in zip(token_times[:-1], token_times[1:]))
    rows = tuple(tuple(step[r] for step in stamps.tokens) for r in range(len(stamps.tokens[0]))) if stamps.tokens else ()
    return TimedRun(token_times[0] - start, steps, rows)


def random_image(size: int = 336, seed: int = 0):
    """Random RGB pixels (seeded): the default benchmark image (seed 0), and the other rows of a batch."""
    return Image.fromarray((np.random.RandomState(seed).rand(size, size, 3) * 255).astype("uint8"))


def approximation_error(model, inputs, candidates: int, new_tokens: int) -> dict:
    """JSD error of the candidate-vocabulary readout against the exact one, on the same steps.

    Both runs use detection that never acts, so they decode the same tokens through the same
    states; the recorded per-layer JSDs are then compared element by element, and the default
    detector is run on both sets of curves.
    """
    curves = {}
    for k in (candidates, 0):
        with skipping(model, variant="exit", mode="online", candidates=k, detection=DetectionConfig.never()) as run:
            model.generate(**inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
        curves[k] = run.report.jsd
    approx, exact = curves[candidates], curves[0]
    observed = ~np.isnan(exact) & ~np.isnan(approx)
    error = np.abs(approx - exact)[observed]
    det_exact, det_approx = detect_layers(torch.from_numpy(exact)), detect_layers(torch.from_numpy(approx))
    return {
        "candidates": candidates,
        "mean_abs_error_nats": float(error.mean()),
        "max_abs_error_nats": float(error.max()),
        "mean_exact_jsd_nats": float(exact[observed].mean()),
        "critical_agreement": float((det_exact.critical == det_approx.critical).float().mean()),
        "mutation_agreement": float((det_exact.mutation == det_approx.mutation).float().mean()),
    }


def lagged_agreement(model, inputs, candidates: int, new_tokens: int) -> dict:
    """How often a lagged decision (step ``t`` skips after step ``t-1``'s confirmation layer) equals the
    per-step decision (after step ``t``'s own), on the full curves of the unmodified model.

    Detect-only runs read every step's whole window; the default detector then gives each step's
    confirmation layer ``k_t``, and the share of steps ``t >= 1`` with ``k_{t-1} = k_t`` (and within one
    layer) is the agreement. Steps where neither confirms count as agreeing.
    """
    with skipping(model, variant="exit", mode="online", candidates=candidates,
                            detection=DetectionConfig.never()) as run:
        model.generate(**inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
    confirmed = detect_layers(torch.from_numpy(run.report.jsd)).confirmed_at.numpy()  # shape: (steps, batch)
    now, before = confirmed[1:], confirmed[:-1]
    return {"steps": int(now.size), "exact": float((now == before).mean()),
            "within_one_layer": float((np.abs(now - before) <= 1).mean()),
            "confirmation_layers": sorted({int(k) for k in confirmed.flatten()})}


def measure(model, inputs: dict, configs: Sequence[SpeedConfig], runs: int, new_tokens: int,
            progress: bool = False, clock: SpeedClock = "wall", statistic: SpeedStatistic = "min",
            tokens: dict | None = None) -> list[SpeedRow]:
    """Time every configuration ``runs`` times, interleaved, after one warm-up round; one row each.

    Args:
        model: The (unwrapped) model; every configuration is wrapped and unwrapped around its run.
        inputs: The processor's inputs of one prompt.
        configs: The configurations; the first must be the stock model (``wrap=None``).
        runs: Timed rounds (>= 1).
        new_tokens: Tokens generated per run, exactly (>= 2: the decode rate needs two).
        progress: Show a progress bar over rounds.
        clock: ``"wall"`` (elapsed time) or ``"cpu"`` (this process's CPU time; see :class:`_Stamps`).
        statistic: ``"min"`` or ``"median"`` (:func:`step_time`).
        tokens: If given, filled with configuration name -> each row's generated token ids (the last run's).
    """
    if configs[0].wrap is not None:
        raise ValueError("the first configuration must be the stock model (wrap=None)")
    if clock not in CLOCKS:
        raise ValueError(f"`clock` (={clock!r}) has to be one of {CLOCKS}")
    if statistic not in STATISTICS:
        raise ValueError(f"`statistic` (={statistic!r}) has to be one of {STATISTICS}")
    if clock == "cpu" and model.device.type != "cpu":
        raise ValueError("the cpu clock measures host CPU time: use the wall clock on an accelerator")
    sync = torch.cuda.synchronize if model.device.type == "cuda" else (lambda: None)
    num_layers = ModelAnatomy.from_model(model).num_layers
    samples = {c.name: {"prefill": [], "run_steps": [], "forwards": [], "skipped": [], "acted": [], "tokens": (),
                        "speculative": None, "error": None} for c in configs}
    forward_clock = time.process_time if clock == "cpu" else time.perf_counter
    for round_index in tqdm(range(runs + 1), desc="rounds", unit="round", disable=not progress):
        for config in configs:
            sample = samples[config.name]
            if sample["error"]:
                continue
            try:
                with _ForwardClock(model, forward_clock, sync) as forwards:
                    if config.wrap is None:
                        timed, report = timed_generate(model, inputs, new_tokens, sync, clock, config.generate), None
                    else:
                        with skipping(model, **config.wrap) as run:
                            timed = timed_generate(model, inputs, new_tokens, sync, clock, config.generate)
                        report = run.report
            except Exception as error:  # noqa: BLE001 - a row that cannot run (a built-in failing on this model)
                if config.wrap is None and config.generate is None:
                    raise
                sample["error"] = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:300]
                logger.warning("%s cannot run here: %s", config.name, sample["error"])
                continue
            if round_index == 0:
                continue  # warm-up
            sample["prefill"].append(timed.prefill_s)
            sample["run_steps"].append(list(timed.step_s))
            sample["forwards"].append(forwards.durations)
            sample["tokens"] = timed.tokens
            if hasattr(report, "acceptance_rate"):
                sample["speculative"] = report  # greedy: every run drafts and accepts alike
            sample["skipped"].append(report.mean_layers_skipped() if hasattr(report, "mean_layers_skipped") else 0.0)
            if report is not None and hasattr(report, "exit_layer"):
                acted = report.skipped.any(axis=(1, 2)) | (report.exit_layer < num_layers).any(axis=1)
                sample["acted"].append([bool(a) for a in acted[1:]])  # decoding step t makes token t
    stock = samples[configs[0].name]
    batch = int(inputs["input_ids"].shape[0])
    if tokens is not None:
        tokens.update({c.name: samples[c.name]["tokens"] for c in configs})
    return [_row(config, samples[config.name], stock["run_steps"], num_layers, statistic, batch, stock["tokens"],
                 stock["forwards"]) for config in configs]


def alone_tokens(model, inputs: dict, config: SpeedConfig, new_tokens: int) -> tuple[int, ...]:
    """The tokens of one untimed, single-row greedy ``generate`` of ``config`` (``new_tokens`` exactly)."""
    def run() -> tuple[int, ...]:
        out = model.generate(**inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
        return tuple(out[0, inputs["input_ids"].shape[1]:].tolist())

    with torch.inference_mode():
        if config.wrap is None:
            return run()
        with skipping(model, **config.wrap):
            return run()


def same_tokens_share(batch_tokens: Sequence[Sequence[int]], alone: Sequence[Sequence[int]]) -> float:
    """The share of rows whose tokens in the batch equal their tokens generated alone."""
    return sum(tuple(b) == tuple(a) for b, a in zip(batch_tokens, alone)) / len(alone)


def _row(config: SpeedConfig, sample: dict, stock_runs: list, num_layers: int, statistic: str = "min",
         batch: int = 1, stock_tokens: tuple = (), stock_forwards: Sequence[Sequence[float]] = ()) -> SpeedRow:
    """The row of one configuration from its samples (seconds), against the stock model's runs.

    ``sample`` holds ``prefill`` (seconds per run), ``run_steps`` (step durations per run), ``forwards`` (per run,
    the durations of the model's forwards; speculative rows: :func:`speculative_costs`),
    ``skipped`` (mean layers skipped per step, per run), ``acted`` (per run, per decoding step:
    whether the configuration skipped or exited; online rows only), ``speculative`` (speculative rows: the
    last run's report) and ``error`` (a configuration that could not run).
    """
    if sample.get("error"):
        nan = float("nan")
        return SpeedRow(config=config.name, batch=batch, layers_skipped=nan, prefill_ms=nan, decode_tokens_per_s=nan,
                        step_ms=nan, step_ms_median=nan, speedup=nan, spread_pct=nan, error=sample["error"],
                        target=config.target.label if config.target else None, met="-" if config.target else None)
    step = step_time(sample["run_steps"], statistic)
    stock_step = step_time(stock_runs, statistic)
    skipped = statistics.median(sample["skipped"])
    speedup = stock_step / step
    per_run = statistics.fmean if commits_several_tokens(sample["run_steps"]) else statistics.median
    runs = [per_run(steps) for steps in sample["run_steps"]]
    values: dict[str, Any] = dict(
        config=config.name, batch=batch, layers_skipped=round(skipped, 2),
        prefill_ms=round(1000 * statistics.median(sample["prefill"]), 1), decode_tokens_per_s=round(batch / step, 2), step_ms=round(1000.0 * step, 2),
        step_ms_median=round(1000.0 * step_time(sample["run_steps"], "median"), 2), speedup=round(speedup, 3),
        spread_pct=round(100 * (max(runs) - min(runs)) / statistics.median(runs), 1),
        overhead_pct=round(100 * (step / stock_step - 1), 1),
    )
    if stock_tokens and sample["tokens"]:
        values["same_tokens_as_stock"] = tuple(sample["tokens"]) == tuple(stock_tokens)
    if sample.get("speculative") is not None:
        report = sample["speculative"]
        memory_bound = report.predicted_speedup
        values.update(acceptance_rate=round(report.acceptance_rate, 3), mean_accepted=round(report.mean_accepted, 2),
                      draft_layer_share=round(report.draft_layer_share, 3), ideal_memory_bound=round(memory_bound, 3),
                      pct_of_memory_bound=round(100 * speedup / memory_bound, 1))
        costs = speculative_costs(sample.get("forwards", ()), stock_forwards, report.draft_forwards, statistic)
        ideal = memory_bound
        if costs is not None:
            ideal = report.predicted_speedup_at(0.0 if math.isnan(costs["draft_cost"]) else costs["draft_cost"],
                                                costs["verify_cost"])
            values.update(draft_cost=None if math.isnan(costs["draft_cost"]) else round(costs["draft_cost"], 3),
                          verify_cost=round(costs["verify_cost"], 3))
        values.update(ideal=round(ideal, 3), pct_of_ideal=round(100 * speedup / ideal, 1))
    elif skipped > 0:
        ideal = num_layers / (num_layers - skipped)
        values.update(ideal=round(ideal, 3), pct_of_ideal=round(100 * speedup / ideal, 1))
    if config.wrap is not None and config.wrap.get("mode") == "online":
        quiet = [t for t, acted in enumerate(zip(*sample["acted"])) if not any(acted)] if sample["acted"] else []
        values["quiet_steps"] = len(quiet)
        if quiet:
            ratio = step_time(sample["run_steps"], statistic, quiet) / step_time(stock_runs, statistic, quiet)
            values["quiet_overhead_pct"] = round(100 * (ratio - 1), 1)
    if config.target is not None:
        values.update(target=config.target.label, met=config.target.met(values))
    return SpeedRow(**values)




#: The first words of the configuration names of :func:`default_configs` (``--only`` accepts them as prefixes):
#: the stock model, the online detect-only rows, and every variant of the registry.
CONFIG_PREFIXES = ("stock", "online", "prompt", "assistant", *VARIANTS)


def parse_only(only: str | None) -> list[str]:
    """The names of ``--only`` (comma-separated), each checked to start with a known prefix (before a model loads).

    Raises:
        InputError: an empty list, or a name whose first word no configuration has.
    """
    if only is None:
        return []
    names = list(dict.fromkeys(name.strip() for name in only.split(",") if name.strip()))
    if not names:
        raise InputError(f"--only {only!r} names no configuration; names start with {', '.join(CONFIG_PREFIXES)}")
    for name in names:
        if name.split()[0] not in CONFIG_PREFIXES:
            raise InputError(f"--only: unknown configuration {name!r}; names start with {', '.join(CONFIG_PREFIXES)}")
    return names


def select_configs(configs: Sequence[SpeedConfig], only: str | None) -> list[SpeedConfig]:
    """The stock configuration and those named in ``only`` (comma-separated names or variant prefixes).

    Raises:
        InputError: a name that is neither a configuration's name nor the first word of one (the message
            lists the names).
    """
    names = parse_only(only)
    if not names:
        return list(configs)
    known = {c.name for c in configs} | {c.name.split(" ")[0] for c in configs}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise InputError(f"--only: unknown configuration {unknown[0]!r}; the configurations are "
                         f"{', '.join(repr(c.name) for c in configs)}")
    wanted = set(names)
    return [c for i, c in enumerate(configs) if i == 0 or c.name in wanted or c.name.split(" ")[0] in wanted]


#: Below this many timed runs neither a spread nor a target can be judged.
MIN_JUDGED_RUNS = 3


def unjudged(rows: Sequence[dict], runs: int) -> tuple[list[dict], str | None]:
    """The rows as printed: with fewer than :data:`MIN_JUDGED_RUNS` runs, spread and targets blanked, and a note.

    One or two runs give a spread of zero or of a single difference, so neither the spread nor a
    target met or missed says anything; the rows then show ``-`` there and the note says why.
    """
    if runs >= MIN_JUDGED_RUNS:
        return [dict(row) for row in rows], None
    blanked = [{k: ("-" if k in ("spread_pct", "met") else v) for k, v in row.items()} for row in rows]
    return blanked, (f"--runs {runs}: with fewer than {MIN_JUDGED_RUNS} timed runs no spread or target can be "
                     f"judged; rerun with --runs {MIN_JUDGED_RUNS} or more")


def noisy_rows(rows: Sequence[SpeedRow], limit_pct: float = 10.0) -> list[str]:
    """The rows whose decode rate spread over the runs exceeds ``limit_pct``."""
    return [row.config if row.batch == 1 else f"{row.config} (batch {row.batch})" for row in rows
            if row.spread_pct > limit_pct]
