"""Train scene-llava on procedurally generated scenes.

Usage::

    python -m recipes.train_scene_llava [--out runs/scene-llava] --seed 0 [--minutes 44]

The output defaults to ``runs/scene-llava``; replacing the shipped model takes an explicit
``--out recipes/models/scene-llava``.

Stage 1 (:mod:`recipes.pretrain_scene_vision`) pre-trains the CLIP vision tower on per-position
classification of the same scenes (LLaVA starts from a pretrained CLIP; without this stage the
decoder learns the text priors and ignores the image for hundreds of steps). Stage 2 trains the
whole model; every batch mixes three tasks on freshly generated ``train`` scenes: captioning
("Describe this image." -> "a red apple on the left and two blue cups at the bottom."), yes/no
questions (existence, colour, number, relation) and single-word VQA (colour, number, position).
The loss is on the answer tokens (and the closing ``</s>``) only. AdamW with linear warm-up and a
cosine decay over a fixed number of steps, so the run is reproducible from ``--seed``;
``--minutes`` is only a safety cap (training stops early, with a warning, if it is reached; the
step reached is in ``train_summary.json`` and ``--stop-after`` replays such a run exactly). The
model and the processor are saved with ``save_pretrained`` (and checkpointed every
``--save-every`` steps), and the training curve goes to ``train_log.csv`` /
``train_summary.json`` in the output folder.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import os
import random
import sys
import time
from pathlib import Path

import torch

from lvlm_skip.inputs.models import chat_prompt
from lvlm_skip.scenes import CAPTION_PROMPTS, make_scene, vqa_questions, yes_no_questions
from recipes.pretrain_scene_vision import pretrain_vision, standardize_projector
from recipes.command import recipe_parser, run_recipe
from recipes.scene_llava import SceneLlavaSpec, build_model, build_processor

logger = logging.getLogger(__name__)

TASK_MIX = (("caption", 0.5), ("yesno", 0.3), ("vqa", 0.2))
"""Task -> probability of a training example."""


def sample_example(seed: int, index: int) -> tuple:
    """The ``index``-th training example: ``(image, prompt_text, answer_text, task)``."""
    scene = make_scene("train", seed, index)
    rng = random.Random(f"task:{seed}:{index}")
    r, task = rng.random(), TASK_MIX[-1][0]
    acc = 0.0
    for name, p in TASK_MIX:
        acc += p
        if r < acc:
            task = name
            break
    if task == "caption":
        return scene.image, rng.choice(CAPTION_PROMPTS), scene.caption(), task
    qs = yes_no_questions(scene, rng) if task == "yesno" else vqa_questions(scene)
    q = rng.choice(qs)
    return scene.image, q.query, q.answer, task


def collate(processor, examples: list[tuple]) -> dict[str, torch.Tensor]:
    """Right-padded batch with labels on the answer tokens and ``</s>`` only."""
    tok = processor.tokenizer
    ids, labels = [], []
    for image, question, answer, _ in examples:
        p_ids = processor(text=chat_prompt(processor, question), images=image)["input_ids"][0]
        p_ids = list(p_ids)
        a_ids = tok(" " + answer, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        ids.append(p_ids + a_ids)
        labels.append([-100] * len(p_ids) + a_ids)
    n = max(len(x) for x in ids)
    pad = tok.pad_token_id
    input_ids = torch.full((len(ids), n), pad, dtype=torch.long)
    label_t = torch.full((len(ids), n), -100, dtype=torch.long)
    mask = torch.zeros((len(ids), n), dtype=torch.long)
    for i, (x, y) in enumerate(zip(ids, labels)):
        input_ids[i, : len(x)] = torch.tensor(x)
        label_t[i, : len(y)] = torch.tensor(y)
        mask[i, : len(x)] = 1
    pixel_values = processor.image_processor([e[0] for e in examples], return_tensors="pt")[
        "pixel_values"
    ]
    return {"input_ids": input_ids, "attention_mask": mask, "labels": label_t,
            "pixel_values": pixel_values}


def lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    """Linear warm-up then cosine decay to 10% of ``peak``."""
    if step < warmup:
        return peak * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def save(model, processor, out: Path) -> None:
    """Save model (float32 safetensors) and processor."""
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)


def train(args: argparse.Namespace) -> dict:
    """Run the training loop; returns the summary written to ``train_summary.json``.

    Raises:
        InputError: ``args.out`` is not a usable folder (checked before anything is built).
    """
    from lvlm_skip.inputs.paths import check_output_dir

    out = check_output_dir(args.out)
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    spec = SceneLlavaSpec(hidden=args.hidden, layers=args.layers, intermediate=args.intermediate)
    processor = build_processor(spec)
    model = build_model(spec, processor).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    logger.info("parameters: %d, device: %s, steps: %d", n_params, device, args.steps)
    start = time.time()
    vision = {}
    if args.vision_steps:
        vrows: list = []
        vision = pretrain_vision(model, processor, args.seed, args.vision_steps,
                                 batch_size=args.vision_batch_size, lr=args.vision_lr,
                                 device=device, log_rows=vrows)
        with open(out / "vision_log.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["step", "loss", "kind_acc", "color_acc", "count_acc"])
            w.writerows([[r[0]] + [f"{x:.5f}" for x in r[1:]] for r in vrows])
        logger.info("stage 1 (vision) done: %s", vision)
    vision["projector_standardization"] = standardize_projector(model, processor, args.seed)
    logger.info("projector standardised: %s", vision["projector_standardization"])
    stage2_start = time.time()
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr, betas=(0.9, 0.98), eps=1e-8,
    )
    log_path = out / "train_log.csv"
    rows = []
    stopped_early = False
    model.train()
    with open(log_path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["step", "loss", "lr", "elapsed_s", "examples"])
        ema = None
        for step in range(args.steps):
            if args.stop_after is not None and step >= args.stop_after:
                logger.info("stopping after %d steps (--stop-after)", step)
                stopped_early = True
                break
            if args.minutes and time.time() - start > args.minutes * 60:
                logger.warning("time cap of %.1f min reached at step %d", args.minutes, step)
                stopped_early = True
                break
            lr = lr_at(step, args.steps, args.lr, args.warmup)
            for g in opt.param_groups:
                g["lr"] = lr
            base = step * args.batch_size
            batch = collate(processor, [sample_example(args.seed, base + j)
                                        for j in range(args.batch_size)])
            batch = {k: v.to(device) for k, v in batch.items()}
            loss = model(**batch).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            val = loss.item()
            ema = val if ema is None else 0.95 * ema + 0.05 * val
            elapsed = time.time() - stage2_start
            writer.writerow([step, f"{val:.5f}", f"{lr:.6g}", f"{elapsed:.1f}",
                             base + args.batch_size])
            rows.append((step, val))
            if step % args.log_every == 0 or step == args.steps - 1:
                f.flush()
                logger.info("step %5d  loss %.4f (ema %.4f)  lr %.2e  %.0fs", step, val, ema, lr,
                            elapsed)
            if args.save_every and step and step % args.save_every == 0:
                save(model, processor, out)
    train_s = time.time() - start
    model.eval()
    save(model, processor, out)
    summary = {
        "seed": args.seed, "steps_done": len(rows), "steps_planned": args.steps,
        "batch_size": args.batch_size, "lr": args.lr, "warmup": args.warmup,
        "task_mix": dict(TASK_MIX), "train_seconds": round(train_s, 1),
        "stopped_early": stopped_early, "vision_steps": args.vision_steps,
        "vision_batch_size": args.vision_batch_size, "vision_lr": args.vision_lr,
        "vision_pretraining": vision, "stage2_seconds": round(time.time() - stage2_start, 1),
        "parameters": n_params, "device": str(device),
        "threads": torch.get_num_threads(), "final_loss_ema": ema,
        "spec": vars(spec),
    }
    (out / "train_summary.json").write_text(json.dumps(summary, indent=2))
    logger.info("done in %.1f min: %s", train_s / 60, out)
    return summary


def build_parser():
    """The options of ``python -m recipes.train_scene_llava``."""
    ap = recipe_parser("recipes.train_scene_llava", __doc__.split("\n")[0])
    ap.add_argument("--out", default="runs/scene-llava",
                    help="output folder; the shipped model is replaced only by an explicit --out recipes/models/scene-llava")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--minutes", type=float, default=None, help="safety cap on wall time")
    ap.add_argument("--stop-after", type=int, default=None,
                    help="stop after this many steps (schedule still planned for --steps); "
                         "reproduces a run that the --minutes cap stopped early")
    ap.add_argument("--vision-steps", type=int, default=800,
                    help="stage-1 vision pre-training steps (0 = skip)")
    ap.add_argument("--vision-batch-size", type=int, default=64)
    ap.add_argument("--vision-lr", type=float, default=1e-3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=80)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--hidden", type=int, default=160)
    ap.add_argument("--layers", type=int, default=16)
    ap.add_argument("--intermediate", type=int, default=432)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (default: os.cpu_count(); 1 is faster on a CPU shared "
                         "with other busy processes)")
    ap.add_argument("--log-every", type=int, default=20)
    ap.add_argument("--save-every", type=int, default=200)
    return ap


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments (training logs its progress in lines: ``--no-progress`` changes nothing)."""
    return build_parser().parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; an unusable ``--out`` exits with status 2 and one line."""
    return run_recipe(build_parser(), _run, argv, log_format="%(asctime)s %(levelname)s %(message)s")


def _run(args: argparse.Namespace) -> int:
    train(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
