"""Drop-in: ``lvlm_skip.wrap(model, variant=..., mode=...)`` makes the model's own ``generate`` skip layers.

    model = lvlm_skip.wrap(model, variant="skip2", mode="online")
    out = model.generate(**inputs, max_new_tokens=64)        # the user's unchanged call
    report = lvlm_skip.last_report(model)                     # what happened at each step
    lvlm_skip.unwrap(model)                                   # the stock model again

Everything transformers' ``generate`` offers keeps working: greedy and sampling, streamers,
stopping criteria, logits processors, left-padded batches. Beam search reorders the batch's rows
between steps, so it is accepted only with the same static skip set for every row and refused
otherwise. A direct ``model(**inputs)`` call is intervened as well (it is the prefill of a new
sequence).
"""

from __future__ import annotations

from dataclasses import dataclass

from .anatomy import ModelAnatomy
from .hooks import LayerRouting
from .skipping import SkipConfig, SkipController, SkipReport

_STATE_ATTR = "_lvlm_skip_state"


@dataclass
class _WrapState:
    controller: SkipController
    routing: LayerRouting | None
    previous_generate: object | None
    last_report: SkipReport | None = None


def wrap(model, variant: str = "none", mode: str = "static", **options):
    """Install a layer intervention on ``model`` (in place) and return it.

    Args:
        model: A supported HF model (see :mod:`lvlm_skip.anatomy`).
        variant: none, skip1, skip2, skip3, exit or layers (see :mod:`lvlm_skip.skipping`).
        mode: static or online.
        **options: Other :class:`~lvlm_skip.skipping.SkipConfig` fields (``layers``, ``critical_layer``,
            ``mutation_layers``, ``exit_layer``, ``keep_last``, ``detection``, ``candidates``,
            ``window_start``, ``kv_fill``).

    Returns:
        The same model object.

    Raises:
        ValueError / TypeError: unknown variant, mode or option, layers out of range, a skip set
            covering every layer, a model that is already wrapped. The model is left untouched.
        UnsupportedModelError: the model's layout is not supported.
    """
    if getattr(model, _STATE_ATTR, None) is not None:
        raise ValueError("this model is already wrapped by lvlm_skip; call lvlm_skip.unwrap(model) first")
    anatomy = ModelAnatomy.from_model(model)
    if "detection" in options and isinstance(options["detection"], dict):
        from .detection import DetectionConfig

        options["detection"] = DetectionConfig.from_dict(options["detection"])
    config = SkipConfig.from_kwargs(variant=variant, mode=mode, **options)
    controller = SkipController(anatomy, config)
    # nothing above touched the model: from here on it is modified
    routing = LayerRouting(anatomy, controller.run_layer) if config.variant != "none" else None
    state = _WrapState(controller=controller, routing=routing, previous_generate=model.__dict__.get("generate"))
    stock_generate = model.generate

    def generate(*args, **kwargs):
        _refuse_beam_search(model, controller, kwargs)
        controller.reset()
        try:
            return stock_generate(*args, **kwargs)
        finally:
            state.last_report = controller.report()

    generate.__doc__ = stock_generate.__doc__
    model.generate = generate
    setattr(model, _STATE_ATTR, state)
    return model


def unwrap(model):
    """Remove the intervention: the layers' and ``generate``'s previous methods are restored exactly."""
    state = getattr(model, _STATE_ATTR, None)
    if state is None:
        raise ValueError("this model is not wrapped by lvlm_skip")
    if state.routing is not None:
        state.routing.remove()
    if state.previous_generate is None:
        model.__dict__.pop("generate", None)
    else:
        model.generate = state.previous_generate
    delattr(model, _STATE_ATTR)
    return model


def is_wrapped(model) -> bool:
    return getattr(model, _STATE_ATTR, None) is not None


def last_report(model) -> SkipReport:
    """The :class:`~lvlm_skip.skipping.SkipReport` of the wrapped model's last generate / forward sequence."""
    state = getattr(model, _STATE_ATTR, None)
    if state is None:
        raise ValueError("this model is not wrapped by lvlm_skip")
    return state.last_report if state.last_report is not None else state.controller.report()


def _refuse_beam_search(model, controller: SkipController, kwargs) -> None:
    generation_config = kwargs.get("generation_config") or getattr(model, "generation_config", None)
    beams = kwargs.get("num_beams", getattr(generation_config, "num_beams", 1)) or 1
    config = controller.config
    per_row_state = config.mode == "online" or config.needs_calibration
    if beams > 1 and config.variant != "none" and per_row_state:
        raise ValueError(
            f"beam search (num_beams={beams}) reorders rows between steps and is not supported with "
            f"{config.mode} {config.variant}, whose decisions are per row; use num_beams=1, or a static "
            "variant with given layers"
        )
