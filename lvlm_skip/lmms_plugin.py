"""An lmms-eval model plugin: lmms-eval's ``llava_hf`` chat model with :func:`lvlm_skip.wrap` on it.

Registered through the entry-point group ``lmms_eval.models`` (``pip install -e .[lmms]``)::

    lmms-eval --model lvlm_skip --tasks pope \\
        --model_args pretrained=DIR,device_map=cpu,variant=skip2,profile=profile.json

``--model_args`` keys that :func:`lvlm_skip.wrap` knows (``variant``, ``mode``, ``profile`` and every
:class:`~lvlm_skip.skips.SkipConfig` / peer option) are taken out before the rest goes to
``llava_hf``; lists may be written ``layers=[12,14]`` or ``layers=12;14``. A bad value is one line.

This is the only module of the package that imports ``lmms_eval``, and nothing imports it but
lmms-eval's registry. ``llava_hf`` logs a generation exception and scores ``""``; here it is
re-raised, so a crashing intervention never looks like wrong answers. The mean layers skipped per
step is logged and written to ``lvlm_skip_<variant>.json`` in ``output_path`` when one is given.
"""

from __future__ import annotations

import ast
import json
from dataclasses import fields
from pathlib import Path

import torch
from lmms_eval.api.registry import register_model  # noqa: F401 - imported so lmms-eval is set up
from lmms_eval.models.chat.llava_hf import LlavaHf
from lmms_eval.models.registry_v2 import ModelManifest
from lmms_eval.utils import eval_logger

from .config import SpeculativeOptions
from .errors import InputError
from .peers import DecoConfig, DolaConfig, VcdConfig
from .skips import SkipConfig
from .wrapping import last_report, wrap

#: ``--model_args`` keys taken by the plugin, not passed on to ``llava_hf``.
WRAP_KEYS = frozenset({"variant", "mode", "profile", "lvlm_skip_output"}
                      | {f.name for c in (SkipConfig, DolaConfig, DecoConfig, VcdConfig, SpeculativeOptions)
                         for f in fields(c)}
                      - {"variant", "mode"})
#: Options whose value is a list of ints.
LIST_KEYS = frozenset({"layers", "mutation_layers", "candidates"})


def _as_list(key: str, value):
    if isinstance(value, int):
        return [value]
    if isinstance(value, (list, tuple)):
        return list(value)
    text = str(value).strip()
    try:
        parsed = ast.literal_eval(text) if text.startswith(("[", "(")) else [int(v) for v in text.replace(";", " ").split()]
    except (ValueError, SyntaxError):
        raise InputError(f"model_args {key}={value!r}: expected a list of layers like [12,14] or 12;14") from None
    if not isinstance(parsed, (list, tuple)) or not all(isinstance(v, int) for v in parsed):
        raise InputError(f"model_args {key}={value!r}: expected a list of integer layers like [12,14]")
    return list(parsed)


def split_model_args(kwargs: dict) -> tuple[dict, dict]:
    """``(wrap options, the rest)`` of lmms-eval's model kwargs, lists parsed."""
    options, rest = {}, {}
    for key, value in kwargs.items():
        if key not in WRAP_KEYS:
            rest[key] = value
        elif key in LIST_KEYS:
            options[key] = _as_list(key, value)
        else:
            options[key] = value
    return options, rest


class LvlmSkip(LlavaHf):
    """``llava_hf`` with a layer intervention (a skip variant or a peer) installed by :func:`lvlm_skip.wrap`."""

    is_simple = False

    def __init__(self, **kwargs) -> None:
        options, rest = split_model_args(kwargs)
        self.variant = str(options.pop("variant", "none"))
        mode = options.pop("mode", None)
        profile = options.pop("profile", None)
        self._stats_path = options.pop("lvlm_skip_output", None)
        if self.variant == "speculative" and int(rest.get("batch_size", 1)) != 1:
            raise InputError(f"lvlm_skip model_args: speculative decoding verifies one sequence at a time: use "
                             f"batch_size=1 (got {rest['batch_size']})")
        # llava_hf's defaults (device cuda, device_map "") fail on a CPU machine and on transformers 5
        rest.setdefault("device", "cuda:0" if torch.cuda.is_available() else "cpu")
        rest.setdefault("device_map", rest["device"])
        super().__init__(**rest)
        try:
            wrap(self.model, self.variant, mode, profile=profile, **options)
        except (TypeError, ValueError, InputError) as exc:
            raise InputError(f"lvlm_skip model_args: {str(exc).splitlines()[0]}") from None
        self._generation_error: BaseException | None = None
        self._skipped: list[float] = []
        wrapped = self.model.generate

        def generate(*args, **kw):
            try:
                out = wrapped(*args, **kw)
            except Exception as exc:  # llava_hf would log it and score ""
                self._generation_error = exc
                raise
            report = last_report(self.model)
            mean = getattr(report, "mean_layers_skipped", None)
            if callable(mean):
                self._skipped.append(mean())
            return out

        self.model.generate = generate

    def generate_until(self, requests):
        out = super().generate_until(requests)
        if self._generation_error is not None:
            error, self._generation_error = self._generation_error, None
            raise RuntimeError(f"lvlm_skip {self.variant}: generation failed: {error}") from error
        self._write_stats()
        return out

    def mean_layers_skipped(self) -> float | None:
        """Mean layers skipped per step over the generate calls so far (None for the peers and none)."""
        return sum(self._skipped) / len(self._skipped) if self._skipped else None

    def _write_stats(self) -> None:
        mean = self.mean_layers_skipped()
        eval_logger.info(f"lvlm_skip {self.variant}: mean layers skipped per step {mean}")
        if self._stats_path:
            path = Path(self._stats_path)
            path.mkdir(parents=True, exist_ok=True)
            (path / f"lvlm_skip_{self.variant}_rank{self.rank}.json").write_text(json.dumps(
                {"variant": self.variant, "generate_calls": len(self._skipped),
                 "mean_layers_skipped_per_step": mean}, indent=1))


def manifests():
    """The entry point's payload: one chat model, ``lvlm_skip``."""
    return [ModelManifest(model_id="lvlm_skip", chat_class_path="lvlm_skip.lmms_plugin.LvlmSkip")]
