"""What the evaluation subcommands (amber, caption, pope) share: running a task from their arguments.

A subcommand adds its options with :func:`lvlm_skip.cli.options.add_evaluation_arguments` plus its
data files, and its ``run`` calls :func:`run_task` with a function that loads its task. The order
of checks is the same everywhere, cheapest first, so that bad input never waits for a model:

1. ``--out`` is a writable folder (:func:`lvlm_skip.inputs.paths.check_output_dir`);
2. the variants, their options and ``--profile`` (:func:`lvlm_skip.evaluation.variants.plan_variants`);
3. ``--model`` and ``--image-dir`` are given (unless ``--score-only``), the device and dtype resolve;
4. the task's data files load;
5. the runner claims the folder (lock, fingerprint) before it loads the model.

Like the subcommand modules, this one imports only the standard library at import time.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..inputs.paths import check_output_dir
from .options import BUILTIN_MODELS, CliError, progress_enabled

logger = logging.getLogger("lvlm_skip.cli")


def run_task(args: Any, load_task: Callable[[], Any], embedded_images: bool = False,
             adapt_plan: Callable[[Any, Any], Any] | None = None) -> int:
    """Run the evaluation task that ``load_task()`` returns, with the shared options of ``args``.

    ``embedded_images``: the task's data holds its images (``--dataset``), so no ``--image-dir`` is needed.
    ``adapt_plan(plan, task) -> plan``: settles what the task decides per variant (POPE's ``--protocol``)
    once the task is loaded.

    Prints the report's table on stdout (rank 0). Returns 0; bad input raises
    :class:`~lvlm_skip.errors.InputError` / :class:`CliError` (one line, exit status 2).
    """
    out = check_output_dir(args.out)
    from ..evaluation.runner import RunSettings, evaluate  # the harness loads when a command runs, not for --help
    from ..evaluation.variants import plan_variants  # as above

    plan = plan_variants(args.variants, args.mode, args.variant_options, args.profile)
    _check_layers_before_loading(args.model, plan)
    generation = image_dir = None
    if not args.score_only:
        if not args.model:
            raise CliError("--model is required (unless --score-only)")
        if embedded_images and args.image_dir:
            raise CliError("--dataset holds its images: --image-dir is not used with it")
        if not embedded_images:
            if not args.image_dir:
                raise CliError("--image-dir is required (unless --score-only or --dataset)")
            image_dir = Path(args.image_dir)
            if not image_dir.is_dir():
                raise CliError(f"--image-dir {args.image_dir!r} is not a folder")
        from ..evaluation.generation import GenerationSettings  # as above
        from ..inputs.models import resolve_device, resolve_dtype  # loads torch: not for --help

        device = resolve_device(args.device)
        dtype = str(resolve_dtype(args.dtype, device)).replace("torch.", "")
        generation = GenerationSettings(model=args.model, device=str(device), dtype=dtype, device_map=args.device_map,
                                        max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
    task = load_task()
    if adapt_plan is not None:
        plan = adapt_plan(plan, task)
    settings = RunSettings(out=out, plan=plan, generation=generation, image_dir=image_dir,
                           builtin_model=bool(args.model) and args.model in BUILTIN_MODELS, limit=args.limit,
                           overwrite=args.overwrite, score_only=args.score_only, progress=progress_enabled(args),
                           verify_weights=args.verify_weights)
    report = evaluate(task, settings)
    if report is not None:
        sys.stdout.write(report.table() + "\n(tokens_per_s and speedup are left out: the variants ran one after "
                         "the other without a warm-up; they are in the .json report, and `lvlm-skip speed` "
                         "measures speed)\n")
        for name, reason in (report.meta.get("skipped_metrics") or {}).items():
            logger.info("%s skipped: %s", name, reason)
    return 0


def _config_num_layers(model) -> int | None:
    """A local model folder's decoder depth from its config.json (``text_config`` first), or None when unknown."""
    config_file = Path(model) / "config.json" if model else None
    if config_file is None or not config_file.is_file():
        return None
    try:
        config = json.loads(config_file.read_text())
    except (OSError, ValueError):
        return None
    for part in (config.get("text_config") or {}, config):
        if isinstance(part.get("num_hidden_layers"), int):
            return part["num_hidden_layers"]
    return None


def _check_layers_before_loading(model, plan) -> None:
    """Refuse --variant-options layers outside 1..L from config.json alone, before any weights load."""
    num_layers = _config_num_layers(model)
    if num_layers is None:
        return
    for label, options in plan.options.items():
        for key in ("layers", "critical_layer", "mutation_layers"):
            value = options.get(key)
            values = value if isinstance(value, (tuple, list)) else [value] if isinstance(value, int) else []
            for layer in values:
                if isinstance(layer, int) and not 1 <= layer <= num_layers:
                    raise CliError(f"--variant-options {label}: {key} {layer} is out of range for the "
                                   f"{num_layers}-layer model {model!r} (layers 1..{num_layers})")
