"""Variant specs, their ``wrap`` options and layer profile: what each evaluated variant is.

A *variant spec* is ``name`` or ``name:mode`` (``none``, ``skip2``, ``skip2:online``,
``exit:online``): ``name`` is one of ``lvlm_skip.VARIANTS``, ``mode`` one of ``lvlm_skip.MODES``
(default: ``--mode``); lossless speculative decoding is ``speculative:DRAFT`` (``speculative:skip1``; the
default draft is skip3), its draft's layers given in the options or by the profile. The spec as written is the variant's *label*: the key of its answers and
its row in the reports. The peers (``dola``, ``deco``, ``vcd``; ``lvlm_skip.PEERS``) act at every
step and have no mode: ``dola:online`` is refused rather than run as a second copy of ``dola``,
and ``--mode`` does not apply to them (nor to their fingerprint).

*Variant options* (``--variant-options``, a JSON object or the path of a JSON file) are
``lvlm_skip.wrap`` options per variant name (``"skip1"``) or label (``"skip1:online"``, which
overrides the name's entry key by key), e.g. the paper's layers for LLaVA-1.5-7B::

    {"skip1": {"critical_layer": 18, "mutation_layers": [27, 28, 29, 30]}, "skip3": {"critical_layer": 18}}

Variants without options calibrate their layers per prompt (static) or per step (online).
Everything is checked before any work: unknown variants and modes, duplicate labels, options
for a variant that was not asked for, unknown options, and values of the wrong type (the message
names the key). Layer numbers are checked against the model when it is loaded.

A *layer profile* (``--profile``, ``profile.json`` from ``lvlm-skip profile``) gives the
variants' critical and mutation layers; :func:`wrap_arguments` is the one place that passes it
to ``lvlm_skip.wrap``.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import MODES, SPECULATIVE_DRAFTS, SkipConfig, SpeculativeOptions, build_config
from ..data.json_files import parse_json
from ..errors import InputError, one_line
from ..profiles.profile import LayerProfile
from ..variants import PEERS, PROFILE_VARIANTS, VARIANTS


@dataclass(frozen=True)
class VariantSpec:
    """One requested variant.

    Attributes:
        label: The spec as written (``"skip2:online"``); keys answers and report rows.
        variant: ``lvlm_skip`` variant name.
        mode: ``lvlm_skip.wrap`` mode.
        draft: See below.
    """

    label: str
    variant: str
    mode: str
    draft: str | None = None
    """``speculative:DRAFT``: the skip set that drafts (skip1, skip3, exit, layers); ``None`` for the others."""


@dataclass(frozen=True)
class Decoding:
    """How one variant decodes where it departs from the run's greedy decoding (e.g. a peer's published protocol).

    Attributes:
        sample: Sample the next token from the processed distribution instead of taking the argmax.
        temperature: Sampling temperature (transformers' ``temperature``).
        top_p: Nucleus cut (``top_p``; 1.0: off).
        top_k: Top-k cut (``top_k``; 0: off).
        max_new_tokens: This variant's length limit, or ``None`` for the run's.
        seed: With ``sample``, each item's sampling seed is :meth:`item_seed` of this and the item's
            id, so that an answer is the same on a rerun, in any shard and at any batch size (sampled
            rows are generated one at a time).
    """

    sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_new_tokens: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.temperature > 0 or not 0 < self.top_p <= 1 or self.top_k < 0:
            raise InputError(f"decoding needs temperature > 0, 0 < top_p <= 1 and top_k >= 0, got {self}")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise InputError(f"decoding max_new_tokens must be >= 1, got {self.max_new_tokens}")

    def generate_kwargs(self) -> dict[str, Any]:
        """``generate`` keywords: ``do_sample`` and, when sampling, the three processors' settings."""
        if not self.sample:
            return {"do_sample": False}
        return {"do_sample": True, "temperature": self.temperature, "top_p": self.top_p, "top_k": self.top_k}

    def item_seed(self, item_id: Any) -> int:
        """The sampling seed of one item: a 32-bit hash of ``seed`` and the item's id (stable across runs and machines)."""
        return zlib.crc32(f"{self.seed}:{item_id!r}".encode("utf-8"))

    def fingerprint(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class VariantPlan:
    """Every variant of a run with its checked ``wrap`` options.

    Attributes:
        specs: The variants in report order.
        options: Label -> ``lvlm_skip.wrap`` options (lists as tuples), checked against ``SkipConfig``.
        profile: The layer profile file given to every variant except ``none``, or ``None``.
        decoding: Label -> its :class:`Decoding`, for the variants that do not decode greedily with the
            run's length limit (empty: every variant does).
    """

    specs: tuple[VariantSpec, ...]
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    profile: Path | None = None
    decoding: Mapping[str, Decoding] = field(default_factory=dict)

    @property
    def labels(self) -> list[str]:
        return [s.label for s in self.specs]

    def spec(self, label: str) -> VariantSpec:
        return next(s for s in self.specs if s.label == label)

    @property
    def reference(self) -> str | None:
        """The label of the first ``none`` variant (the reference of speedup and closeness), if any."""
        return next((s.label for s in self.specs if s.variant == "none"), None)


def parse_variant_spec(spec: str, default_mode: str = "static") -> VariantSpec:
    """Parses ``name`` or ``name:mode``.

    Raises:
        InputError: unknown variant or mode, or a malformed spec.
    """

    label = spec.strip()
    name, sep, mode = label.partition(":")
    name, mode = name.strip(), (mode.strip() if sep else default_mode)
    if name not in VARIANTS:
        raise InputError(f"unknown variant {name!r} in variant spec {label!r}; known: {', '.join(VARIANTS)}")
    if VARIANTS[name].is_speculative:  # speculative:DRAFT (default skip3); its "mode" is the draft
        draft = mode if sep else SpeculativeOptions.draft
        if draft not in SPECULATIVE_DRAFTS:
            raise InputError(f"variant spec {label!r}: unknown draft {draft!r}; known: {', '.join(SPECULATIVE_DRAFTS)}")
        return VariantSpec(label=label, variant=name, mode="static", draft=draft)
    if sep and name in PEERS:
        raise InputError(f"variant spec {label!r}: {name} has no mode (it acts at every step); write {name!r}")
    if mode not in MODES:
        raise InputError(f"unknown mode {mode!r} in variant spec {label!r}; known: {', '.join(MODES)}")
    return VariantSpec(label=label, variant=name, mode=mode)


def parse_variant_specs(specs: str | Iterable[str], default_mode: str = "static") -> list[VariantSpec]:
    """Parses a comma-separated string (or a list) of specs; rejects an empty list and duplicate labels."""
    parts = specs.split(",") if isinstance(specs, str) else list(specs)
    parsed = [parse_variant_spec(p, default_mode) for p in parts if p.strip()]
    if not parsed:
        raise InputError("no variant given; e.g. --variants none,skip1,skip2:online")
    labels = [s.label for s in parsed]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise InputError(f"duplicate variant spec(s) {', '.join(duplicates)}")
    return parsed


def load_variant_options(text: str | None) -> dict[str, dict[str, Any]]:
    """Reads ``--variant-options``: a JSON object, or the path of a file holding one.

    Returns:
        ``{variant name or label: {wrap option: value}}`` (empty for ``None`` / ``""``).

    Raises:
        InputError: not JSON, not an existing file, or not an object of objects.
    """
    if not text or not text.strip():
        return {}
    source = "--variant-options"
    if not text.lstrip().startswith("{"):
        path = Path(text)
        if not path.is_file():
            raise InputError(f"--variant-options {text!r} is neither a JSON object nor an existing file")
        try:
            source, text = str(path), path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise InputError(f"--variant-options {text!r} is unreadable ({one_line(error)})") from None
    options = parse_json(text, source)
    if not isinstance(options, dict) or not all(isinstance(v, dict) for v in options.values()):
        raise InputError(f"{source}: expected an object of objects, e.g. {{\"skip3\": {{\"critical_layer\": 18}}}}")
    return options


# ---------------------------------------------------------------------------------- type checks


def _accepts(hint: Any, value: Any) -> bool:
    """Whether a JSON ``value`` fits a ``SkipConfig`` field annotation (``int | None``, ``tuple[int, ...]``, ...)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_accepts(h, value) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (tuple, list):
        args = [a for a in typing.get_args(hint) if a is not Ellipsis] or [Any]
        return isinstance(value, (list, tuple)) and all(_accepts(args[0], v) for v in value)
    if dataclasses.is_dataclass(hint):
        return isinstance(value, dict)
    return True  # an annotation this check does not know: SkipConfig itself decides


_JSON_NAMES = {int: "an int", float: "a number", str: "a string", bool: "true or false", type(None): "null"}


def _type_name(hint: Any) -> str:
    """A field annotation in JSON words: ``int | None`` -> ``"an int or null"``."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = sorted(typing.get_args(hint), key=lambda a: a is type(None))
        return " or ".join(_type_name(a) for a in args)
    if origin in (tuple, list):
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        return f"a list of {_type_name(args[0]).split(' ', 1)[-1]}s" if args else "a list"
    if dataclasses.is_dataclass(hint):
        return "an object"
    return _JSON_NAMES.get(hint, getattr(hint, "__name__", str(hint)))


def check_option_types(config_class: type, options: Mapping[str, Any], where: str) -> None:
    """Raise :class:`InputError` naming the first option whose JSON value does not fit its field.

    Nested dataclass fields (``detection``) are checked against their own fields.
    """
    try:
        hints = typing.get_type_hints(config_class)
    except Exception:  # noqa: BLE001 - an unresolvable annotation: leave the check to the class
        return
    for key, value in options.items():
        if key not in hints:
            continue  # unknown keys are reported by SkipConfig.from_kwargs with the known ones
        hint = hints[key]
        if not _accepts(hint, value):
            raise InputError(f"{where}: option {key!r} must be {_type_name(hint)}, got {json.dumps(value)}")
        if dataclasses.is_dataclass(hint) and isinstance(value, dict):
            check_option_types(hint, value, f"{where}, {key}")


def _config_class(variant: str) -> type:
    """The dataclass whose fields are ``variant``'s ``wrap`` options: SkipConfig, or the peer's config."""
    return VARIANTS[variant].options


def _check_options(spec: VariantSpec, options: Mapping[str, Any]) -> None:
    """Build the variant's config from ``options`` once, so a bad option fails before any work."""
    declared = VARIANTS[spec.variant]
    if declared.is_peer or declared.is_speculative:
        build_config(declared.options, **options)
    else:
        SkipConfig.from_kwargs(variant=spec.variant, mode=spec.mode, **options)


def resolve_variant_options(specs: Iterable[VariantSpec],
                            variant_options: Mapping[str, Mapping[str, Any]] | None) -> dict[str, dict[str, Any]]:
    """The ``wrap`` options of every spec, by label, checked against its config class (no model needed).

    The entry of the variant name is overridden key by key by the entry of the full label. List
    values become tuples.

    Raises:
        InputError: an entry for a variant that was not asked for, an unknown option, a value of the
            wrong type or out of range (one line naming the label and the key).
    """
    specs = list(specs)
    variant_options = dict(variant_options or {})
    asked = {s.label for s in specs} | {s.variant for s in specs}
    stray = sorted(k for k in variant_options if k not in asked)
    if stray:
        raise InputError(f"--variant-options has entries for {', '.join(stray)}, which --variants "
                         f"({', '.join(s.label for s in specs)}) does not ask for")
    resolved: dict[str, dict[str, Any]] = {}
    for spec in specs:
        options = {**variant_options.get(spec.variant, {}), **variant_options.get(spec.label, {})}
        if spec.variant == "none" and options:
            raise InputError(f"variant {spec.label!r} takes no options (got {sorted(options)})")
        check_option_types(_config_class(spec.variant), options, f"variant {spec.label!r}")
        options = {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}
        if spec.draft is not None:  # speculative:DRAFT: the label's draft, recorded with the options
            if options.setdefault("draft", spec.draft) != spec.draft:
                raise InputError(f"variant {spec.label!r}: its options say draft {options['draft']!r}")
        try:
            _check_options(spec, options)
        except (TypeError, ValueError) as exc:
            raise InputError(f"variant {spec.label!r}: {one_line(exc)}") from None
        resolved[spec.label] = options
    return resolved


def check_profile(path: str | None) -> Path | None:
    """``--profile`` as a path, after checking that it is a layer profile file (:mod:`lvlm_skip.profiles`).

    Raises:
        InputError: the file does not exist or is not a profile.
    """
    if not path:
        return None

    try:
        LayerProfile.load(path)
    except InputError as exc:
        raise InputError(f"--profile: {one_line(exc)}") from None
    return Path(path)


def plan_variants(variants: str, mode: str = "static", variant_options: str | None = None,
                  profile: str | None = None) -> VariantPlan:
    """The checked :class:`VariantPlan` of ``--variants``, ``--mode``, ``--variant-options`` and ``--profile``.

    Raises:
        InputError: see :func:`parse_variant_specs`, :func:`resolve_variant_options` and :func:`check_profile`.
    """
    specs = parse_variant_specs(variants, mode)
    options = resolve_variant_options(specs, load_variant_options(variant_options))
    return VariantPlan(specs=tuple(specs), options=options, profile=check_profile(profile))


def wrap_arguments(plan: VariantPlan, label: str) -> dict[str, Any]:
    """The keyword arguments of ``lvlm_skip.wrap`` for the variant ``label`` (the one place that builds them)."""
    spec = plan.spec(label)
    arguments: dict[str, Any] = {"variant": spec.variant, **plan.options.get(label, {})}
    if VARIANTS[spec.variant].modes:  # a peer and speculative decoding take no mode
        arguments["mode"] = spec.mode
    if plan.profile is not None and spec.variant in PROFILE_VARIANTS:
        arguments["profile"] = str(plan.profile)
    return arguments


def variant_fingerprint(plan: VariantPlan, label: str, profile_sha256: str | None) -> dict[str, Any]:
    """The answer-changing settings of one variant: variant, mode, options, profile digest.

    ``none`` is the stock model and a peer acts at every step whatever the mode, so their mode is not recorded.
    """
    spec = plan.spec(label)
    options = {k: list(v) if isinstance(v, tuple) else v for k, v in sorted(plan.options.get(label, {}).items())}
    modeless = spec.variant == "none" or not VARIANTS[spec.variant].modes
    uses_profile = plan.profile is not None and spec.variant in PROFILE_VARIANTS
    fingerprint = {"variant": spec.variant, "mode": None if modeless else spec.mode, "options": options,
                   "profile_sha256": profile_sha256 if uses_profile else None}
    if label in plan.decoding:  # only then: the fingerprints of greedy runs stay what they were
        fingerprint["decoding"] = plan.decoding[label].fingerprint()
    return fingerprint
