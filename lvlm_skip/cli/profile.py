"""``lvlm-skip profile``: a model's critical and mutation layers over many prompts (``profile.json``).

Answers the first N prompts of an AMBER-, COCO- or POPE-format folder (the scene benchmark that
``lvlm-skip scenes`` writes is AMBER format), detects every generated token's critical and
mutation layers, and writes the aggregate (:mod:`lvlm_skip.profiles`): ``profile.json`` (the model's
``c`` and ``M`` by the documented rule, the statistics, the provenance), ``profile.md`` and the
supplementary's Fig. 2 for this model (``profile.png`` / ``.svg``). Use the file with
``--profile`` in every evaluation command, or ``lvlm_skip.wrap(model, variant, profile=...)``.
"""

from __future__ import annotations

import json
from typing import get_args

from ..config import READOUTS, DataFormat

from .options import (
    CliError, StageLines, add_batch_size_argument, add_model_arguments, add_output_arguments,
    add_verify_weights_argument, positive_int, progress_enabled,
)

HELP = "Measure a model's critical / mutation layers over N prompts and write profile.json."


def add_arguments(p) -> None:
    add_model_arguments(p)
    p.add_argument("--data", required=True, help="An AMBER-, COCO- or POPE-format folder (the scene benchmark is AMBER format).")
    p.add_argument("--format", default="auto", choices=("auto", *get_args(DataFormat)), help="The folder's format.")
    p.add_argument("--image-dir", default=None, help="Folder of the images the data names (default: DATA/images, else DATA).")
    p.add_argument("-n", "--limit", type=positive_int, default=50, help="Profile the first N prompts.")
    p.add_argument("--prompt", default=None, help="Replace the data's prompts (AMBER, POPE) or set COCO's "
                   "(default: the paper's 'Please describe this image in detail.').")
    p.add_argument("--max-new-tokens", type=positive_int, default=64, help="Generation length per prompt.")
    add_batch_size_argument(p, auto="1 on CPU; 16 on CUDA, halved when a batch runs out of memory. The profile does "
                            "not depend on it.")
    p.add_argument("--readout", default="normed", choices=READOUTS,
                   help="normed: lm_head(norm(h_j)); raw: lm_head(h_j) as the authors' code.")
    p.add_argument("--detection", default=None, help="DetectionConfig fields as a JSON object, e.g. '{\"rel_low\": 0.25}'.")
    add_verify_weights_argument(p)
    add_output_arguments(p, default="runs/profile", resumable=False)


def run(args) -> int:
    from ..inputs.paths import check_output_dir

    stages = StageLines(args)
    out = check_output_dir(args.out)
    detection = None
    if args.detection:
        from ..detection import DetectionConfig

        try:
            detection = DetectionConfig.from_dict(json.loads(args.detection))
        except RecursionError:
            raise CliError("--detection: JSON nested too deeply") from None
        except (json.JSONDecodeError, TypeError, ValueError) as error:
            raise CliError(f"--detection: {error}") from None
    from ..inputs.models import load_model, resolve_device, resolve_dtype
    from ..profiles.measure import load_profile_data, profile
    from ..profiles.report import write_profile_outputs

    data = load_profile_data(args.data, data_format=args.format, image_dir=args.image_dir, image_option="--image-dir", limit=args.limit,
                             prompt=args.prompt)
    device = resolve_device(args.device)
    model, processor = load_model(args.model, dtype=resolve_dtype(args.dtype, device), device=device,
                                  device_map=args.device_map, progress=progress_enabled(args))
    stages.done("load", 1, "model")
    result = profile(model, processor, data, max_new_tokens=args.max_new_tokens, detection=detection,
                     readout=args.readout, progress=progress_enabled(args), batch_size=args.batch_size)
    stages.done("profile", len(data.items), "prompt(s)")
    from ..evaluation.fingerprint import model_identity
    from ..inputs.models import BUILTIN_MODELS

    result.provenance["model"].update(model_identity(args.model, builtin=BUILTIN_MODELS, verify=args.verify_weights))
    paths = write_profile_outputs(result, out, title=str(args.model))
    stages.done("write", len(paths), "file(s)")
    print(f"critical layer {result.critical_layer}, mutation layers {list(result.mutation_layers) or 'none'} "
          f"({result.rule['basis']} tokens); wrote {', '.join(str(p) for p in paths)}")
    return 0
