"""Drop-in: ``lvlm_skip.wrap(model, variant=..., mode=...)`` makes the model's own ``generate`` skip layers.

    model = lvlm_skip.wrap(model, variant="skip2", mode="online")
    out = model.generate(**inputs, max_new_tokens=64)        # the user's unchanged call
    report = lvlm_skip.last_report(model)                     # what happened at each step
    lvlm_skip.unwrap(model)                                   # the stock model again

or, scoped, restoring the model even if the block raises::

    with lvlm_skip.skipping(model, variant="skip3", critical_layer=18) as run:
        out = model.generate(**inputs, max_new_tokens=64)
    run.report                                                # the last sequence's SkipReport

Everything transformers' ``generate`` offers keeps working: greedy and sampling, streamers,
stopping criteria, logits processors, left-padded batches. Beam search reorders the batch's rows
between steps, so it is accepted only with the same static skip set for every row and refused
otherwise. A direct ``model(**inputs)`` call is intervened as well (it is the prefill of a new
sequence).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

from .anatomy import ModelAnatomy, UnsupportedModelError
from .clock import SequenceClock
from .config import Mode, SkipConfig, SpeculativeOptions
from .errors import InputError
from .hooks import HeadRouting, LayerRouting, SequenceClockHook
from .peers import PeerController, PeerReport, peer_config
from .profiles import LayerProfile
from .skips import SkipController, SkipReport
from .speculative import SpeculativeDecoder, SpeculativeReport, speculative_config
from .variants import VariantName
from .variants import variant as declared_variant

_STATE_ATTR = "_lvlm_skip_state"
#: ``wrap(model, variant=SPECULATIVE, draft=...)``: lossless self-speculative decoding (:mod:`lvlm_skip.speculative`)
SPECULATIVE = "speculative"


@dataclass
class _WrapState:
    controller: SkipController | PeerController | SpeculativeDecoder
    routings: list
    previous_generate: object | None
    last_report: SkipReport | PeerReport | SpeculativeReport | None = None


def _refuse_linear_attention(model):
    """Refuse hybrid linear-attention models (Qwen3.5 and the like) here, before any generation runs."""
    config = getattr(model, "config", None)
    text = getattr(config, "text_config", None) or config
    kinds = set(getattr(text, "layer_types", None) or ())
    if any("linear" in str(kind) for kind in kinds):
        raise UnsupportedModelError(
            f"{type(model).__name__} has linear-attention layers ({', '.join(sorted(map(str, kinds)))}); "
            "lvlm_skip supports full-attention decoders only"
        )


def wrap(model, variant: VariantName | SkipConfig = "none", mode: Mode | None = None, *, profile=None, **options):
    """Install a layer intervention on ``model`` (in place) and return it.

    Args:
        model: A supported HF model (see :mod:`lvlm_skip.anatomy`).
        variant: none, skip1, skip2, skip3, exit or layers (see :mod:`lvlm_skip.skips`), a peer
            (dola, deco, vcd: :mod:`lvlm_skip.peers`), ``"speculative"`` (lossless self-speculative decoding:
            ``draft=`` skip1 / skip3 / exit / layers with its layer options, ``k=``, ``threshold=``;
            :mod:`lvlm_skip.speculative`), or a whole :class:`~lvlm_skip.skips.SkipConfig` (then no other
            option is accepted).
        mode: static (the default) or online, for the skips; the peers act at every step and take no mode.
        profile: A layer profile (``profile.json`` from :func:`lvlm_skip.profile`) giving the skips'
            ``critical_layer`` and ``mutation_layers`` (:mod:`lvlm_skip.profiles`); options given
            explicitly win. Static mode without layers or a profile measures them on each prompt.
        **options: Other :class:`~lvlm_skip.skips.SkipConfig` fields (``layers``, ``critical_layer``,
            ``mutation_layers``, ``exit_layer``, ``keep_last``, ``positions``, ``decide``, ``detection``,
            ``readout``, ``candidates``, ``window_start``, ``kv_fill``), or the peer's options
            (:class:`~lvlm_skip.peers.DolaConfig`, ``DecoConfig``, ``VcdConfig``).

    Returns:
        The same model object.

    Raises:
        ValueError / TypeError: unknown variant, mode or option, layers out of range, a skip set
            covering every layer, a model that is already wrapped. The model is left untouched.
        UnsupportedModelError: the model's layout is not supported.
    """
    if getattr(model, _STATE_ATTR, None) is not None:
        raise ValueError("this model is already wrapped by lvlm_skip; call lvlm_skip.unwrap(model) first")
    _refuse_linear_attention(model)
    anatomy = ModelAnatomy.from_model(model)
    if variant == SPECULATIVE:
        controller, routings = _speculative(model, anatomy, mode, profile, options)
        return _install(model, controller, routings, SequenceClock())
    declared = None if isinstance(variant, SkipConfig) else declared_variant(variant)  # unknown names raise here
    clock = SequenceClock()
    if declared is not None and declared.is_peer:
        if profile is not None:
            raise TypeError(f"{variant} takes no layer profile: its layers are its own options")
        if mode is not None:
            raise TypeError(f"{variant} takes no mode: it acts at every step (got mode={mode!r})")
        controller = PeerController(model, anatomy, variant, peer_config(variant, **options), clock)
        # nothing above touched the model: from here on it is modified
        routings = [SequenceClockHook(anatomy, clock), *controller.install()]
    else:
        if isinstance(variant, SkipConfig):
            if options or mode is not None or profile is not None:
                raise TypeError("wrap(model, config): pass the options inside the SkipConfig, not beside it")
            config = variant
        else:
            if profile is not None:
                options = _profile_options(declared, profile, anatomy.num_layers, options)
            config = SkipConfig.from_kwargs(variant=variant, mode=mode or "static", **options)
        controller = SkipController(anatomy, config, clock)
        # nothing above touched the model: from here on it is modified
        routings = []
        if config.variant != "none":
            routings.append(SequenceClockHook(anatomy, clock))
            routings.append(LayerRouting(anatomy, controller.run_layer))
            if config.mode == "online":
                routings.append(HeadRouting(anatomy, controller.on_logits))
    return _install(model, controller, routings, clock)


def _speculative(model, anatomy: ModelAnatomy, mode, profile, options: dict):
    """The controller and routings of ``variant="speculative"`` (:mod:`lvlm_skip.speculative`)."""
    if mode is not None:
        raise TypeError(f"speculative takes no mode: its draft is a static skip set (got mode={mode!r})")
    options = dict(options)
    draft = options.pop("draft", SpeculativeOptions.draft)
    if profile is not None:
        SpeculativeOptions(draft=draft)  # an unknown draft is refused before the profile is read for it
        options = _profile_options(declared_variant(draft), profile, anatomy.num_layers, options)
    controller = SpeculativeDecoder(model, anatomy, speculative_config(anatomy, draft, **options))
    return controller, controller.install()  # nothing above touched the model


def _install(model, controller, routings: list, clock: SequenceClock):
    """Replace ``model.generate`` by the wrapped one and keep the wrap's state on the model."""
    state = _WrapState(controller=controller, routings=routings, previous_generate=model.__dict__.get("generate"))
    stock_generate = model.generate

    def generate(*args, **kwargs):
        _refuse_beam_search(model, controller, kwargs)
        clock.restart()
        controller.reset()
        if isinstance(controller, PeerController):
            controller.begin_generate(kwargs)
        if isinstance(controller, SpeculativeDecoder):
            taken = [k for k in ("custom_generate", "assistant_model", "prompt_lookup_num_tokens", "assistant_early_exit")
                     if kwargs.get(k) is not None]
            if taken:
                raise ValueError(f"speculative mode runs its own decoding loop: do not pass {', '.join(taken)}")
            # generate hands a callable custom_generate only its own extra arguments, not the streamer
            kwargs["custom_generate"] = controller.custom_generate(streamer=kwargs.pop("streamer", None))
        try:
            return stock_generate(*args, **kwargs)
        finally:
            if isinstance(controller, SkipController):
                controller.end_sequence()
            state.last_report = controller.report()

    generate.__doc__ = stock_generate.__doc__
    model.generate = generate
    setattr(model, _STATE_ATTR, state)
    return model


def _profile_options(declared, path, num_layers: int, options: dict) -> dict:
    """``options`` completed with the profile's layers that the variant needs (explicit options win)."""
    variant = declared.name
    if not declared.uses_profile:
        raise TypeError(f"{variant} takes no layer profile: it needs no critical or mutation layer")
    profile = LayerProfile.load(path)
    profile.check_model(num_layers, path)
    options = dict(options, profile=str(path))
    if "critical" in declared.needs and "critical_layer" not in options:
        if not profile.critical_layer:
            raise InputError(f"profile {str(path)!r} found no critical layer: {variant} has nothing to skip from")
        options["critical_layer"] = profile.critical_layer
    if "mutation" in declared.needs and "mutation_layers" not in options and "exit_layer" not in options:
        if not profile.mutation_layers:
            raise InputError(f"profile {str(path)!r} found no mutation layer that recurs across tokens: "
                             f"{variant} would do nothing (give mutation_layers explicitly)")
        options["mutation_layers"] = profile.mutation_layers
    return options


def unwrap(model):
    """Remove the intervention: the layers' and ``generate``'s previous methods are restored exactly."""
    state = getattr(model, _STATE_ATTR, None)
    if state is None:
        raise ValueError("this model is not wrapped by lvlm_skip")
    for routing in state.routings:
        routing.remove()
    if state.previous_generate is None:
        model.__dict__.pop("generate", None)
    else:
        model.generate = state.previous_generate
    delattr(model, _STATE_ATTR)
    return model


def is_wrapped(model) -> bool:
    return getattr(model, _STATE_ATTR, None) is not None


def accepts_cached_prefix(model) -> bool:
    """Whether ``model.generate`` may be handed a cache that holds a stock forward's K/V of the prompt's first positions.

    True for the stock model (transformers' prefix reuse), for online skips, static skips with given layers at
    ``positions="generated"``, DoLa and DeCo: they act at the positions that predict a token, and the rest of
    the prompt runs the stock model. False for static skips that measure their layers on the prompt or skip at every
    position, for VCD (its second pass reads the whole prompt) and for speculative mode; those refuse such a
    prefill in one line (:mod:`lvlm_skip.clock`).
    """
    state = getattr(model, _STATE_ATTR, None)
    return True if state is None else bool(state.controller.accepts_cached_prefix)


def last_report(model) -> SkipReport:
    """The :class:`~lvlm_skip.skips.SkipReport` of the wrapped model's last generate / forward sequence."""
    state = getattr(model, _STATE_ATTR, None)
    if state is None:
        raise ValueError("this model is not wrapped by lvlm_skip")
    return state.last_report if state.last_report is not None else state.controller.report()


class SkipRun:
    """What :func:`skipping` yields: the wrapped model and, after (or during) the block, its report."""

    def __init__(self, model):
        self.model = model
        self._report: SkipReport | None = None

    @property
    def report(self) -> SkipReport:
        """The :class:`~lvlm_skip.skips.SkipReport` of the last sequence generated in the block."""
        return self._report if self._report is not None else last_report(self.model)

    def close(self) -> None:
        """Keep the report and restore the stock model (idempotent)."""
        if self._report is None:
            self._report = last_report(self.model)
            unwrap(self.model)


@contextmanager
def skipping(model, variant: VariantName | SkipConfig = "none", mode: Mode | None = None, **options):
    """``with skipping(model, variant=..., ...) as run:`` wraps ``model`` for the block and restores it after.

    The model is unwrapped when the block ends, also when it raises; ``run.report`` keeps the last
    sequence's :class:`~lvlm_skip.skips.SkipReport`. Arguments as :func:`wrap`.
    """
    wrap(model, variant, mode, **options)
    run = SkipRun(model)
    try:
        yield run
    finally:
        run.close()


def _refuse_beam_search(model, controller: SkipController | PeerController | SpeculativeDecoder, kwargs) -> None:
    generation_config = kwargs.get("generation_config") or getattr(model, "generation_config", None)
    beams = kwargs.get("num_beams", getattr(generation_config, "num_beams", 1)) or 1
    if isinstance(controller, (PeerController, SpeculativeDecoder)):
        name = controller.variant if isinstance(controller, PeerController) else SPECULATIVE
        if beams > 1:
            raise ValueError(f"beam search (num_beams={beams}) is not supported with {name}; use num_beams=1")
        return
    config = controller.config
    per_row_state = config.mode == "online" or controller.needs_calibration
    if beams > 1 and config.variant != "none" and per_row_state:
        raise ValueError(
            f"beam search (num_beams={beams}) reorders rows between steps and is not supported with "
            f"{config.mode} {config.variant}, whose decisions are per row; use num_beams=1, or a static "
            "variant with given layers"
        )
