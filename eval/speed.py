"""Decoding speed of every variant and mode versus the stock model, measured side by side.

    python -m eval.speed                       # LLaVA-1.5-7B-shaped random model, scaled for CPU
    python -m eval.speed --model PATH --image IMG [--device cuda --dtype bfloat16]

Default model: ``LlavaForConditionalGeneration`` with 32 Llama layers like LLaVA-1.5-7B, a CLIP tower
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

import argparse
import logging
import statistics
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch

from lvlm_skip.detection import DetectionConfig  # DetectionConfig.never(): detection that runs but never acts

logger = logging.getLogger("eval.speed")


@dataclass
class Config:
    """One benchmarked configuration: a name and the ``lvlm_skip.wrap`` arguments (None = stock)."""

    name: str
    wrap: dict | None
    skipped: int = 0  # layers skipped per step for the static ones (for the ideal speedup)
    target: str = ""


def default_configs(num_layers: int, candidates: int) -> list[Config]:
    """The paper's variants with LLaVA-1.5-7B's layer choices scaled to ``num_layers``."""
    scale = num_layers / 32
    critical = round(18 * scale)
    mutations = tuple(sorted({round(m * scale) for m in (27, 28, 29, 30)}))
    skip1 = list(range(critical + 1, mutations[0]))
    skip3 = list(range(critical + 1, num_layers - 5 + 1))
    quarter = list(range(num_layers - num_layers // 4 - 3, num_layers - 3))
    return [
        Config("stock", None),
        Config("none", dict(variant="none"), target="<= 3% over stock"),
        Config(f"layers k={len(quarter)}", dict(variant="layers", layers=quarter), len(quarter), ">= 90% of ideal"),
        Config("skip1 static", dict(variant="skip1", critical_layer=critical, mutation_layers=mutations), len(skip1), ">= 90% of ideal"),
        Config("skip2 static", dict(variant="skip2", mutation_layers=mutations), len(mutations), ">= 90% of ideal"),
        Config("skip3 static", dict(variant="skip3", critical_layer=critical), len(skip3), ">= 90% of ideal"),
        Config("exit static", dict(variant="exit", exit_layer=mutations[0] - 1), num_layers - mutations[0] + 1, ">= 90% of ideal"),
        Config("skip1 static calibrated", dict(variant="skip1")),
        Config(f"online detect-only (k={candidates})", dict(variant="exit", mode="online", candidates=candidates, detection=DetectionConfig.never()), target="<= 15% over stock"),
        Config("online detect-only (exact)", dict(variant="exit", mode="online", candidates=0, detection=DetectionConfig.never())),
        Config(f"online detect-only per-layer (k={candidates})", dict(variant="skip2", mode="online", candidates=candidates, detection=DetectionConfig.never())),
        Config("skip1 online", dict(variant="skip1", mode="online", mutation_layers=mutations, candidates=candidates)),
        Config("skip2 online", dict(variant="skip2", mode="online", candidates=candidates)),
        Config("skip3 online", dict(variant="skip3", mode="online", candidates=candidates)),
        Config("exit online", dict(variant="exit", mode="online", candidates=candidates)),
    ]


class _Stamps:
    """A minimal streamer: the time of every ``put`` (the first put is the prompt)."""

    def __init__(self):
        self.times: list[float] = []

    def put(self, value):
        self.times.append(time.perf_counter())

    def end(self):
        pass


def timed_generate(model, inputs: dict, new_tokens: int, sync) -> tuple[float, float, object]:
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


def build_scaled_llava(dtype=torch.float32):
    """The CPU-scaled LLaVA-1.5-7B-shaped random model of the module docstring, with its processor."""
    from lvlm_skip.tiny import build_tiny_llava

    return build_tiny_llava(
        num_layers=32, hidden_size=512, intermediate_size=1376, num_heads=8, num_kv_heads=8,
        vocab_size=4000, image_size=336, patch_size=14, vision_hidden_size=256, vision_layers=4, dtype=dtype,
    )


def load_inputs(model, processor, image_path: str | None, prompt: str):
    from PIL import Image

    from lvlm_skip.loading import chat_prompt, encode_inputs

    if image_path:
        image = Image.open(image_path).convert("RGB")
    else:
        image = Image.fromarray((np.random.RandomState(0).rand(336, 336, 3) * 255).astype("uint8"))
    return encode_inputs(processor, [chat_prompt(processor, prompt)], [image], model)


def approximation_error(model, inputs, candidates: int, new_tokens: int) -> dict:
    """JSD error of the candidate-vocabulary readout against the exact one, on the same steps.

    Both runs use detection that never acts, so they decode the same tokens through the same
    states; the recorded per-layer JSDs are then compared element by element.
    """
    import lvlm_skip

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
    # does the approximation change the detections? (default thresholds, on every step's curve;
    # NaN = a layer outside the window, which detection treats as not observed)
    from lvlm_skip.detection import detect_layers

    det_exact = detect_layers(torch.from_numpy(exact))
    det_approx = detect_layers(torch.from_numpy(approx))
    return {
        "candidates": candidates,
        "mean_abs_error_nats": float(error.mean()),
        "max_abs_error_nats": float(error.max()),
        "mean_exact_jsd_nats": float(exact[observed].mean()),
        "critical_agreement": float((det_exact.critical == det_approx.critical).float().mean()),
        "mutation_agreement": float((det_exact.mutation == det_approx.mutation).float().mean()),
    }


def run(args) -> list[dict]:
    import lvlm_skip

    torch.manual_seed(0)
    torch.set_num_threads(args.threads or torch.get_num_threads())
    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = getattr(torch, args.dtype)
    if args.model:
        from lvlm_skip.loading import load_model

        model, processor = load_model(args.model, dtype=dtype, device=device)
    else:
        model, processor = build_scaled_llava(dtype)
        model.to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    inputs = load_inputs(model, processor, args.image, args.prompt)
    anatomy = lvlm_skip.ModelAnatomy.from_model(model)
    L = anatomy.num_layers
    configs = default_configs(L, args.candidates)
    if args.only:
        wanted = {name.strip() for name in args.only.split(",")}
        configs = [c for c in configs if c.name == "stock" or c.name.split(" ")[0] in wanted or c.name in wanted]
    print(f"model: {type(model).__name__}, {L} layers, hidden {anatomy.hidden_size}, vocab {anatomy.vocab_size}, "
          f"prompt {inputs['input_ids'].shape[1]} tokens, {args.new_tokens} new tokens, device {device}, "
          f"{torch.get_num_threads()} threads, {args.runs} runs (median)", flush=True)

    samples = {c.name: {"prefill": [], "rate": [], "skipped": []} for c in configs}
    from tqdm.auto import tqdm

    rounds = tqdm(range(args.runs + 1), desc="rounds", unit="round", disable=not args.progress)
    for round_index in rounds:
        for config in configs:
            if config.wrap is not None:
                lvlm_skip.wrap(model, **config.wrap)
            try:
                prefill, rate, _ = timed_generate(model, inputs, args.new_tokens, sync)
                skipped = lvlm_skip.last_report(model).mean_layers_skipped() if config.wrap is not None else 0.0
            finally:
                if config.wrap is not None:
                    lvlm_skip.unwrap(model)
            if round_index == 0:
                continue  # warm-up
            samples[config.name]["prefill"].append(prefill)
            samples[config.name]["rate"].append(rate)
            samples[config.name]["skipped"].append(skipped)

    stock_rate = statistics.median(samples["stock"]["rate"])
    stock_step_ms = 1000.0 / stock_rate
    rows = []
    for config in configs:
        s = samples[config.name]
        rate = statistics.median(s["rate"])
        row = {
            "config": config.name,
            "layers skipped/step": round(statistics.median(s["skipped"]), 2),
            "prefill ms": round(1000 * statistics.median(s["prefill"]), 1),
            "decode tok/s": round(rate, 2),
            "step ms": round(1000.0 / rate, 2),
            "speedup": round(rate / stock_rate, 3),
        }
        if config.skipped:
            ideal = L / (L - config.skipped)
            row["ideal"] = round(ideal, 3)
            row["% of ideal"] = round(100 * (rate / stock_rate) / ideal, 1)
        if config.name == "none" or config.name.startswith("online detect-only"):
            row["overhead %"] = round(100 * (stock_rate / rate - 1), 1)
            row["overhead ms/step"] = round(1000.0 / rate - stock_step_ms, 2)
        if config.target:
            row["target"] = config.target
            row["met"] = _met(config, row)
        rows.append(row)
    return rows, model, inputs


def _met(config: Config, row: dict) -> str:
    if config.target.startswith(">= 90%"):
        return "yes" if row["% of ideal"] >= 90 else "no"
    if config.target.startswith("<= 3%"):
        return "yes" if row["overhead %"] <= 3 else "no"
    if config.target.startswith("<= 15%"):
        return "yes" if row["overhead %"] <= 15 else "no"
    return ""


def format_markdown(rows: list[dict]) -> str:
    columns = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(str(row.get(c, "")) for c in columns) + " |")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m eval.speed", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="local HF model folder (default: the CPU-scaled LLaVA-1.5-7B shape)")
    parser.add_argument("--image", help="image for the prompt (default: random pixels)")
    parser.add_argument("--prompt", default="Please describe this image in detail.")
    parser.add_argument("--new-tokens", type=int, default=48, help="tokens generated per run (EOS suppressed)")
    parser.add_argument("--runs", type=int, default=5, help="timed rounds after one warm-up round")
    parser.add_argument("--candidates", type=int, default=256, help="online candidate vocabulary size")
    parser.add_argument("--only", help="comma-separated config names or variant prefixes to run (stock always runs)")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--out", help="also write the table as Markdown and JSON into this folder")
    parser.add_argument("--no-error", action="store_true", help="skip the approximation-error measurement")
    parser.add_argument("--progress", action="store_true", help="show a progress bar over rounds")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    for name in ("new_tokens", "runs"):
        if getattr(args, name) < 2 if name == "new_tokens" else getattr(args, name) < 1:
            print(f"error: --{name.replace('_', '-')} is too small", file=sys.stderr)
            return 2
    try:
        rows, model, inputs = run(args)
    except (FileNotFoundError, ValueError, OSError) as error:  # incl. ModelLoadError, UnsupportedModelError
        print(f"error: {str(error).splitlines()[0]}", file=sys.stderr)
        return 2
    table = format_markdown(rows)
    print(table)
    error = None
    if not args.no_error and args.candidates:
        error = approximation_error(model, inputs, args.candidates, min(args.new_tokens, 24))
        print(
            f"\ncandidate-vocabulary JSD (k={error['candidates']}) vs exact full-vocabulary JSD over the same steps: "
            f"mean |error| {error['mean_abs_error_nats']:.2e} nats, max {error['max_abs_error_nats']:.2e} "
            f"(mean exact JSD {error['mean_exact_jsd_nats']:.2e}); detections with default thresholds agree on "
            f"{100 * error['critical_agreement']:.1f}% of critical layers and "
            f"{100 * error['mutation_agreement']:.1f}% of layer mutation flags"
        )
    if args.out:
        import json
        from pathlib import Path

        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "speed.md").write_text(table + "\n")
        (out / "speed.json").write_text(json.dumps({"rows": rows, "approximation": error}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
