"""Decoding speed of every variant and mode versus the stock model, measured side by side.

    lvlm-skip speed                            # LLaVA-1.5-7B-shaped random model, scaled for CPU
    lvlm-skip speed --model PATH --image IMG [--device cuda --dtype bfloat16]

Default model (``--model bench-llava``, :func:`lvlm_skip.tiny.build_bench_llava`): ``LlavaForConditionalGeneration`` with 32 Llama layers like LLaVA-1.5-7B, a CLIP tower
at 336 px / patch 14 (576 visual tokens), width 512 and MLP 1376 (LLaVA's 4096 / 11008 ratio), and
a 4000-token vocabulary, chosen so that the LM head costs the same fraction of a decoder layer as
in LLaVA-1.5-7B (32000 x 4096 vs 12.4 x 4096^2 MACs: 0.65 layer). That ratio is what decides the
cost of online readouts, so it is kept; absolute times are not comparable with a 7B model.

Method: every configuration runs ``generate`` with exactly ``--new-tokens`` tokens (EOS
suppressed); a streamer stamps each token, giving the prefill time (call start -> first token) and
the decode rate (tokens 2..N over their time). Configurations are interleaved run by run (stock,
A, B, ..., stock, A, B, ...), ``--runs`` times after one warm-up round, and each figure is the
median over runs. Speedup is decode tokens/s over stock's.

Targets (issue 3): a static skip of ``k`` of ``L`` layers reaches >= 90% of the ideal ``L / (L - k)``;
``none`` costs <= 3% over stock; online detection (readout + JSD + detector at every window layer,
measured with thresholds that never act, on the once-per-step path that ``exit`` uses; the per-layer
path that skip1/2/3 need is reported beside it) costs <= 15% over a stock decoding step. The approximation
error of the candidate-vocabulary JSD against the exact full-vocabulary JSD is reported from the
same prompt's steps.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SpeedConfig:
    """One benchmarked configuration.

    Attributes:
        name: Its row label (``"skip1 static"``).
        wrap: ``lvlm_skip.wrap`` keyword arguments; ``None`` is the stock model.
        skipped: Layers skipped per step by a static configuration (for the ideal speedup).
        target: The issue's target for this row, if any (``"<= 3% over stock"``).
    """

    name: str
    wrap: dict | None
    skipped: int = 0
    target: str = ""


@dataclass(frozen=True)
class SpeedRow:
    """The median measurements of one configuration (times in milliseconds, rates per second).

    Attributes:
        config: The configuration's name.
        layers_skipped: Median of the mean layers skipped per decoding step.
        prefill_ms: Median time from the ``generate`` call to the first token.
        decode_tokens_per_s: Median decode rate (tokens 2..N over their time).
        step_ms: ``1000 / decode_tokens_per_s``.
        speedup: Decode rate over the stock model's.
        overhead_pct: ``100 * (stock rate / rate - 1)`` (``none`` and detect-only rows).
        overhead_ms_per_step: ``step_ms`` minus the stock model's.
        target: The target of the row, if any.
        met: ``"yes"`` / ``"no"`` against the target.
        ideal: ``L / (L - k)`` for a static skip of ``k`` of ``L`` layers.
        pct_of_ideal: ``100 * speedup / ideal``.
    """

    config: str
    layers_skipped: float
    prefill_ms: float
    decode_tokens_per_s: float
    step_ms: float
    speedup: float
    overhead_pct: float | None = None
    overhead_ms_per_step: float | None = None
    target: str | None = None
    met: str | None = None
    ideal: float | None = None
    pct_of_ideal: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_configs(num_layers: int, candidates: int) -> list[SpeedConfig]:
    """The paper's variants with LLaVA-1.5-7B's layer choices scaled to ``num_layers``."""
    from ..detection import DetectionConfig

    scale = num_layers / 32
    critical = round(18 * scale)
    mutations = tuple(sorted({round(m * scale) for m in (27, 28, 29, 30)}))
    skip1 = list(range(critical + 1, mutations[0]))
    skip3 = list(range(critical + 1, num_layers - 5 + 1))
    quarter = list(range(num_layers - num_layers // 4 - 3, num_layers - 3))
    return [
        SpeedConfig("stock", None),
        SpeedConfig("none", dict(variant="none"), target="<= 3% over stock"),
        SpeedConfig(f"layers k={len(quarter)}", dict(variant="layers", layers=quarter), len(quarter), ">= 90% of ideal"),
        SpeedConfig("skip1 static", dict(variant="skip1", critical_layer=critical, mutation_layers=mutations), len(skip1), ">= 90% of ideal"),
        SpeedConfig("skip2 static", dict(variant="skip2", mutation_layers=mutations), len(mutations), ">= 90% of ideal"),
        SpeedConfig("skip3 static", dict(variant="skip3", critical_layer=critical), len(skip3), ">= 90% of ideal"),
        SpeedConfig("exit static", dict(variant="exit", exit_layer=mutations[0] - 1), num_layers - mutations[0] + 1, ">= 90% of ideal"),
        SpeedConfig("skip1 static calibrated", dict(variant="skip1")),
        SpeedConfig(f"online detect-only (k={candidates})", dict(variant="exit", mode="online", candidates=candidates, detection=DetectionConfig.never()), target="<= 15% over stock"),
        SpeedConfig("online detect-only (exact)", dict(variant="exit", mode="online", candidates=0, detection=DetectionConfig.never())),
        SpeedConfig(f"online detect-only per-layer (k={candidates})", dict(variant="skip2", mode="online", candidates=candidates, detection=DetectionConfig.never())),
        SpeedConfig("skip1 online", dict(variant="skip1", mode="online", mutation_layers=mutations, candidates=candidates)),
        SpeedConfig("skip2 online", dict(variant="skip2", mode="online", candidates=candidates)),
        SpeedConfig("skip3 online", dict(variant="skip3", mode="online", candidates=candidates)),
        SpeedConfig("exit online", dict(variant="exit", mode="online", candidates=candidates)),
    ]


class _Stamps:
    """A minimal streamer: the time of every ``put`` (the first put is the prompt)."""

    def __init__(self):
        self.times: list[float] = []

    def put(self, value):
        self.times.append(time.perf_counter())

    def end(self):
        pass


def timed_generate(model, inputs: dict, new_tokens: int, sync: Callable[[], None]) -> tuple[float, float, Any]:
    """``(prefill seconds, decode tokens/s, output)`` of one greedy generate of exactly ``new_tokens``."""
    stamps = _Stamps()
    sync()
    start = time.perf_counter()
    out = model.generate(
        **inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, streamer=stamps
    )
    sync()
    end = time.perf_counter()
    token_times = stamps.times[1:]  # [0] is the prompt
    prefill = token_times[0] - start
    decode = (end - token_times[0]) / max(1, new_tokens - 1)
    return prefill, 1.0 / decode, out


def random_image(size: int = 336):
    """Random RGB pixels (seeded): the default benchmark image."""
    import numpy as np
    from PIL import Image

    return Image.fromarray((np.random.RandomState(0).rand(size, size, 3) * 255).astype("uint8"))


def approximation_error(model, inputs, candidates: int, new_tokens: int) -> dict:
    """JSD error of the candidate-vocabulary readout against the exact one, on the same steps.

    Both runs use detection that never acts, so they decode the same tokens through the same
    states; the recorded per-layer JSDs are then compared element by element.
    """
    import numpy as np
    import torch

    import lvlm_skip
    from lvlm_skip.detection import DetectionConfig

    curves = {}
    for k in (candidates, 0):
        lvlm_skip.wrap(model, variant="exit", mode="online", candidates=k, detection=DetectionConfig.never())
        try:
            model.generate(**inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
            curves[k] = lvlm_skip.last_report(model).jsd
        finally:
            lvlm_skip.unwrap(model)
    approx, exact = curves[candidates], curves[0]
    observed = ~np.isnan(exact) & ~np.isnan(approx)
    error = np.abs(approx - exact)[observed]
    # does the approximation change the detections? (default thresholds, on every step's curve)
    from ..detection import detect_layers

    window = np.where(observed.any(axis=(0, 1)))[0]
    det_exact = detect_layers(torch.from_numpy(np.nan_to_num(exact[..., window], nan=0.0)))
    det_approx = detect_layers(torch.from_numpy(np.nan_to_num(approx[..., window], nan=0.0)))
    return {
        "candidates": candidates,
        "mean_abs_error_nats": float(error.mean()),
        "max_abs_error_nats": float(error.max()),
        "mean_exact_jsd_nats": float(exact[observed].mean()),
        "critical_agreement": float((det_exact.critical == det_approx.critical).float().mean()),
        "mutation_agreement": float((det_exact.mutation == det_approx.mutation).float().mean()),
    }


def measure(model, inputs: dict, configs: Sequence[SpeedConfig], runs: int, new_tokens: int,
            progress: bool = False) -> list[SpeedRow]:
    """Time every configuration ``runs`` times, interleaved, after one warm-up round; median rows.

    Args:
        model: The (unwrapped) model; every configuration is wrapped and unwrapped around its run.
        inputs: The processor's inputs of one prompt.
        configs: The configurations; the first must be the stock model (``wrap=None``).
        runs: Timed rounds (>= 1).
        new_tokens: Tokens generated per run, exactly (>= 2: the decode rate needs two).
        progress: Show a progress bar over rounds.
    """
    import torch
    from tqdm.auto import tqdm

    import lvlm_skip

    if configs[0].wrap is not None:
        raise ValueError("the first configuration must be the stock model (wrap=None)")
    sync = torch.cuda.synchronize if model.device.type == "cuda" else (lambda: None)
    num_layers = lvlm_skip.ModelAnatomy.from_model(model).num_layers
    samples = {c.name: {"prefill": [], "rate": [], "skipped": []} for c in configs}
    for round_index in tqdm(range(runs + 1), desc="rounds", unit="round", disable=not progress):
        for config in configs:
            if config.wrap is not None:
                lvlm_skip.wrap(model, **config.wrap)
            try:
                prefill, rate, _ = timed_generate(model, inputs, new_tokens, sync)
                skipped = lvlm_skip.last_report(model).mean_layers_skipped() if config.wrap is not None else 0.0
            finally:
                if config.wrap is not None:
                    lvlm_skip.unwrap(model)
            if round_index == 0:
                continue  # warm-up
            samples[config.name]["prefill"].append(prefill)
            samples[config.name]["rate"].append(rate)
            samples[config.name]["skipped"].append(skipped)

    stock_rate = statistics.median(samples[configs[0].name]["rate"])
    stock_step_ms = 1000.0 / stock_rate
    rows = []
    for config in configs:
        s = samples[config.name]
        rate = statistics.median(s["rate"])
        values: dict[str, Any] = dict(
            config=config.name, layers_skipped=round(statistics.median(s["skipped"]), 2),
            prefill_ms=round(1000 * statistics.median(s["prefill"]), 1), decode_tokens_per_s=round(rate, 2),
            step_ms=round(1000.0 / rate, 2), speedup=round(rate / stock_rate, 3),
        )
        if config.skipped:
            ideal = num_layers / (num_layers - config.skipped)
            values.update(ideal=round(ideal, 3), pct_of_ideal=round(100 * (rate / stock_rate) / ideal, 1))
        if config.name == "none" or config.name.startswith("online detect-only"):
            values.update(overhead_pct=round(100 * (stock_rate / rate - 1), 1),
                          overhead_ms_per_step=round(1000.0 / rate - stock_step_ms, 2))
        if config.target:
            values.update(target=config.target, met=_met(config, values))
        rows.append(SpeedRow(**values))
    return rows


def _met(config: SpeedConfig, row: dict) -> str:
    if config.target.startswith(">= 90%"):
        return "yes" if row["pct_of_ideal"] >= 90 else "no"
    if config.target.startswith("<= 3%"):
        return "yes" if row["overhead_pct"] <= 3 else "no"
    if config.target.startswith("<= 15%"):
        return "yes" if row["overhead_pct"] <= 15 else "no"
    return ""


def select_configs(configs: Sequence[SpeedConfig], only: str | None) -> list[SpeedConfig]:
    """The stock configuration and those named in ``only`` (comma-separated names or variant prefixes)."""
    if not only:
        return list(configs)
    wanted = {name.strip() for name in only.split(",") if name.strip()}
    return [c for i, c in enumerate(configs) if i == 0 or c.name in wanted or c.name.split(" ")[0] in wanted]
