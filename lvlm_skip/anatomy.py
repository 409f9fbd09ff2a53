"""Where a Hugging Face model keeps its decoder layers, final norm and LM head.

This is the only module of `lvlm_skip` that knows about transformers' model internals. Everything
else receives a :class:`ModelAnatomy` and works on plain tensors.

Layer indexing, used everywhere in the package (the paper's convention, eq. 2):

* ``L`` = number of decoder layers.
* Layer ``j`` (1-based, ``j = 1..L``) is ``anatomy.layers[j - 1]``; its output is the hidden state
  ``h_j``. ``h_0`` is the input embeddings.
* A readout / JSD curve of a step therefore has ``L + 1`` readouts (``j = 0..L``) and ``L``
  adjacent divergences ``d_j = JSD(p_{j-1} || p_j)``, stored at array index ``j - 1``: ``d_j`` is the
  change made by layer ``j``.
"""

from __future__ import annotations

import copy
import inspect
import re
import sys
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import torch
import transformers
from torch import nn
from transformers import AutoModelForCausalLM
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer

from .errors import InputError

#: The two names transformers 5.x has given the KV cache argument of a decoder layer and of a model's
#: ``forward``: ``cache`` since 5.24 (``past_key_values`` kept as a deprecated alias), ``past_key_values``
#: before. :class:`ModelAnatomy` reads which one the installed version uses from the signatures.
CACHE_ARGUMENT_NAMES = ("cache", "past_key_values")

#: Architectures (``model.config.architectures`` / class names) that the tests cover. Others that
#: expose the same layout (a decoder with ``.layers`` and ``.norm``, Llama-style attention) work too.
SUPPORTED_ARCHITECTURES = (
    "LlavaForConditionalGeneration",
    "LlavaNextForConditionalGeneration",
    "Qwen2VLForConditionalGeneration",
    "LlavaOnevisionForConditionalGeneration",
    "VipLlavaForConditionalGeneration",
    "Qwen2_5_VLForConditionalGeneration",
    "Gemma3ForConditionalGeneration",
    "PaliGemmaForConditionalGeneration",
    "Mistral3ForConditionalGeneration",
    "ChameleonForConditionalGeneration",
    "Idefics2ForConditionalGeneration",
    "Idefics3ForConditionalGeneration",
    "SmolVLMForConditionalGeneration",
    "InternVLForConditionalGeneration",
    "Qwen3VLForConditionalGeneration",
    "AyaVisionForConditionalGeneration",
    "MllamaForConditionalGeneration",
    "LlamaForCausalLM",
    "MistralForCausalLM",
    "Qwen2ForCausalLM",
)


class UnsupportedModelError(InputError):
    """The model does not expose the decoder layout that `lvlm_skip` needs."""


class UnrecognisedCallError(UnsupportedModelError):
    """transformers called a layer, or built a cache, in a way this module does not recognise."""


def _installed() -> str:
    return f"transformers {transformers.__version__}"


def cache_argument_of(function) -> str:
    """The name under which ``function`` (a layer's or model's ``forward``) takes the KV cache.

    Raises:
        UnrecognisedCallError: the signature has neither name of :data:`CACHE_ARGUMENT_NAMES`.
    """
    parameters = inspect.signature(function).parameters
    for name in CACHE_ARGUMENT_NAMES:
        if name in parameters:
            return name
    owner = getattr(function, "__qualname__", repr(function))
    raise UnrecognisedCallError(
        f"{owner} takes no cache argument ({' or '.join(CACHE_ARGUMENT_NAMES)}) on {_installed()}: "
        "lvlm_skip does not know how this version passes the KV cache"
    )


@dataclass(frozen=True, eq=False)
class ModelAnatomy:
    """The parts of a decoder-only (or vision-language) model that the lens and the skipper use.

    Attributes:
        model: The whole model (e.g. ``LlavaForConditionalGeneration``).
        decoder: The text decoder module (``LlamaModel`` and friends), owner of ``layers`` and ``norm``.
        layers: The decoder layer stack, ``L`` modules.
        final_norm: The norm applied to the last layer's output before the LM head.
        lm_head: The unembedding, hidden size -> vocabulary.
        num_layers: ``L``.
        hidden_size: Width of the residual stream.
        vocab_size: Rows of the LM head.
        layer_cache_argument: The keyword under which the decoder hands each layer the KV cache
            (``"cache"`` on transformers >= 5.24, ``"past_key_values"`` before).
        model_cache_argument: The same for the model's own ``forward`` (what ``generate`` passes).
        layer_returns_tuple: The decoder reads ``layer_outputs[0]`` from each layer (Chameleon on 5.x), so
            an intervened layer must return ``(hidden,)``, not a bare tensor; read from the decoder's loop.
        logit_scale: The model multiplies its head's logits by this (Cohere / AyaVision's ``logit_scale``;
            1.0 for the others); read from the model's ``forward``.
        logit_softcap: The model soft-caps its logits, ``cap * tanh(z / cap)`` (PaliGemma with a Gemma 2
            text config, Gemma 2 / 3 as causal LMs), or ``None``; read from the model's ``forward``.
        masked_tokens: Token ids whose logits the model sets to its dtype's minimum (Chameleon's image tokens:
            it never emits image codes as text); ``()`` for the others; read from the model's ``forward``.
    """

    model: nn.Module
    decoder: nn.Module
    layers: nn.ModuleList
    final_norm: nn.Module
    lm_head: nn.Module
    num_layers: int
    hidden_size: int
    vocab_size: int
    layer_cache_argument: str = "cache"
    model_cache_argument: str = "cache"
    layer_returns_tuple: bool = False
    logit_scale: float = 1.0
    logit_softcap: float | None = None
    masked_tokens: tuple[int, ...] = ()

    @classmethod
    def from_model(cls, model: nn.Module) -> "ModelAnatomy":
        """Find the anatomy of ``model`` through its own API (``get_decoder``, ``get_output_embeddings``).

        Raises:
            UnsupportedModelError: naming what was looked for and not found.
        """
        name = type(model).__name__
        looked_for = (
            "model.get_decoder() with .layers (a ModuleList) and .norm, and model.get_output_embeddings() "
            f"(supported: {', '.join(SUPPORTED_ARCHITECTURES)})"
        )
        get_decoder = getattr(model, "get_decoder", None)
        get_head = getattr(model, "get_output_embeddings", None)
        if get_decoder is None or get_head is None:
            raise UnsupportedModelError(f"unsupported model {name}: looked for {looked_for}")
        decoder = get_decoder()
        layers = getattr(decoder, "layers", None)
        final_norm = getattr(decoder, "norm", None)
        lm_head = get_head()
        if not isinstance(layers, nn.ModuleList) or len(layers) == 0 or final_norm is None or lm_head is None:
            raise UnsupportedModelError(f"unsupported model {name}: looked for {looked_for}")
        text_config = model.config.get_text_config()
        num_layers = int(getattr(text_config, "num_hidden_layers", len(layers)))
        if num_layers != len(layers):
            raise UnsupportedModelError(
                f"unsupported model {name}: config says {num_layers} layers but the decoder holds {len(layers)}"
            )
        return cls(
            model=model,
            decoder=decoder,
            layers=layers,
            final_norm=final_norm,
            lm_head=lm_head,
            num_layers=num_layers,
            hidden_size=int(text_config.hidden_size),
            vocab_size=int(lm_head.weight.shape[0]),
            layer_cache_argument=cache_argument_of(type(layers[0]).forward),
            model_cache_argument=cache_argument_of(type(model).forward),
            layer_returns_tuple=_decoder_unpacks_layer_tuple(type(decoder).forward),
            **_final_logit_transform(model),
        )

    def unembed(self, normed: torch.Tensor, vocab_rows: torch.Tensor | None = None, *,
                model_transform: bool = True) -> torch.Tensor:
        """The model's logits of final-normed states: the LM head, then the model's own scale, soft-cap and mask.

        Args:
            normed: `(..., hidden)` states after the final norm (or the raw states of the ``raw`` readout).
            vocab_rows: Optional `(k,)` token ids: only those logits.
            model_transform: Apply ``logit_scale`` / ``logit_softcap`` / ``masked_tokens`` (``False``: the head
                alone, as transformers 4.x's DoLa read its premature layers).

        Returns:
            `(..., vocab)` or `(..., k)`, in the head's dtype; equal to the model's own logits for the last layer.
        """
        head = self.lm_head
        if vocab_rows is None:
            logits = head(normed)
        else:
            bias = None if getattr(head, "bias", None) is None else head.bias[vocab_rows]
            logits = torch.nn.functional.linear(normed, head.weight[vocab_rows], bias)
        if model_transform and self.logit_scale != 1.0:
            logits = logits * self.logit_scale
        if model_transform and self.logit_softcap is not None:
            logits = torch.tanh(logits / self.logit_softcap) * self.logit_softcap
        if model_transform and self.masked_tokens:
            columns = torch.arange(logits.shape[-1], device=logits.device) if vocab_rows is None else vocab_rows
            hit = torch.isin(columns, torch.tensor(self.masked_tokens, device=logits.device))  # shape: (vocab or k,)
            logits = logits.masked_fill(hit, torch.finfo(logits.dtype).min)
        return logits

    @property
    def tied_embeddings(self) -> bool:
        """The LM head shares its weight with the input embeddings (what DoLa's candidate layers depend on).

        Read from the modules, not the config: Qwen2-VL's text config has no ``tie_word_embeddings`` (the
        top-level config holds it).
        """
        embeddings = self.model.get_input_embeddings()
        return embeddings is not None and self.lm_head.weight is embeddings.weight

    @property
    def has_sliding_window_layers(self) -> bool:
        """Some layers attend through a sliding window (Gemma 3): their dynamic cache cannot be cropped back
        once the window is full, so an intervention that re-runs a step's layers cannot serve them."""
        config = self.model.config.get_text_config()
        types = getattr(config, "layer_types", None) or ()
        return getattr(config, "sliding_window", None) is not None and "sliding_attention" in types

    def pack_layer_output(self, hidden: torch.Tensor):
        """What the decoder expects back from a layer whose call was intervened: ``hidden``, or ``(hidden,)``."""
        return (hidden,) if self.layer_returns_tuple else hidden

    def check_layer(self, layer: int, *, allow_embeddings: bool = False) -> int:
        """Validate a 1-based layer number (0 = embeddings when ``allow_embeddings``).

        Raises:
            ValueError: ``layer`` is out of range, with the valid range in the message.
        """
        low = 0 if allow_embeddings else 1
        if not isinstance(layer, int) or isinstance(layer, bool) or not low <= layer <= self.num_layers:
            raise ValueError(f"layer {layer!r} is out of range: this model has layers {low}..{self.num_layers}")
        return layer

    @property
    def head_device(self) -> torch.device:
        """Where the LM head lives; layer states are moved there to be read out (``device_map`` sharding)."""
        return self.lm_head.weight.device

    @property
    def cache_length_layer(self) -> int:
        """1-based layer whose KV cache transformers reads the sequence length from (its first layer).

        ``DynamicCache.get_seq_length()`` and the causal-mask builder read layer index 0, so that layer's
        cache must always be filled, even at a step where the layer itself is skipped.
        """
        return 1

    @cached_property  # read on every skipped layer call
    def cross_attention_layers(self) -> frozenset[int]:
        """1-based layers that attend to the image's states instead of the text (Mllama's ``cross_attn`` layers).

        Their cache holds the keys / values of the image, written once when the layer runs with
        ``cross_attention_states`` (the prompt); a decoding step adds nothing to it, so a skipped step needs no write.
        """
        return frozenset(j for j, layer in enumerate(self.layers, start=1)
                         if hasattr(layer, "cross_attn") and not hasattr(layer, "self_attn"))

    @cached_property  # read on every skipped layer call: computed once (frozen fields, so it cannot go stale)
    def mask_size_layers(self) -> frozenset[int]:
        """1-based layers whose K/V must be in the cache before every forward, even where they are skipped.

        :attr:`cache_length_layer`, and the first layer of each attention type of the config's
        ``layer_types``: the mask builders size each type's mask from that layer's cache
        (``get_mask_sizes(..., layer_idx)``), so a deferred or missing position there leaves the mask one
        key short (AyaVision, whose first full-attention layer is layer 4: an sdpa size error on a
        left-padded batch).
        """
        types = getattr(self.model.config.get_text_config(), "layer_types", None) or ()
        firsts = {types.index(kind) + 1 for kind in set(types)}
        return frozenset({self.cache_length_layer, *firsts})

    # -- how transformers calls a decoder layer (the layer-call contract) ----------------------------------
    # Every other module reads a layer call's keyword arguments through these methods, never by name.

    def layer_cache(self, layer_kwargs: dict):
        """The KV cache object the decoder passed to a layer (``None`` when decoding without a cache)."""
        return layer_kwargs.get(self.layer_cache_argument)

    def layer_kwargs_with_cache(self, layer_kwargs: dict, cache) -> dict:
        """A copy of a layer call's keyword arguments with ``cache`` as its KV cache (``None``: no cache).

        The deprecated alias is dropped, so the layer never sees two caches.
        """
        kwargs = {k: v for k, v in layer_kwargs.items() if k not in CACHE_ARGUMENT_NAMES}
        kwargs[self.layer_cache_argument] = cache
        if cache is None:
            kwargs["use_cache"] = False
        return kwargs

    def model_cache(self, model_kwargs: dict):
        """The KV cache passed to the model's ``forward`` (by ``generate`` or a direct call)."""
        for name in (self.model_cache_argument, *CACHE_ARGUMENT_NAMES):
            if model_kwargs.get(name) is not None:
                return model_kwargs[name]
        return None

    def model_kwargs_with_cache(self, model_kwargs: dict, cache) -> dict:
        """A copy of a model ``forward``'s keyword arguments with ``cache`` as its KV cache."""
        kwargs = {k: v for k, v in model_kwargs.items() if k not in CACHE_ARGUMENT_NAMES}
        kwargs[self.model_cache_argument] = cache
        return kwargs

    @staticmethod
    def split_layer_call(args: tuple, layer_kwargs: dict) -> tuple[torch.Tensor, tuple, dict]:
        """``(hidden, other_args, other_kwargs)`` of a layer call: the hidden state comes first or as ``hidden_states``."""
        if args:
            return args[0], args[1:], layer_kwargs
        kwargs = dict(layer_kwargs)
        return kwargs.pop("hidden_states"), (), kwargs

    @staticmethod
    def query_length(args: tuple, model_kwargs: dict) -> int:
        """New positions in a model ``forward`` call: the length of its ``input_ids`` or ``inputs_embeds``."""
        tokens = model_kwargs.get("input_ids", args[0] if args else None)
        if tokens is None:
            tokens = model_kwargs.get("inputs_embeds")
        if tokens is None:
            raise UnrecognisedCallError(f"a model forward with neither input_ids nor inputs_embeds on {_installed()}; "
                                        "lvlm_skip cannot tell how many positions it adds")
        return int(tokens.shape[1])

    @staticmethod
    def output_cache(outputs):
        """The cache a model's ``forward`` returned (``outputs.cache`` since 5.24, ``past_key_values`` before)."""
        cache = getattr(outputs, "cache", None)
        return cache if cache is not None else getattr(outputs, "past_key_values", None)

    @staticmethod
    def position_embeddings(layer_kwargs: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """The rotary ``(cos, sin)`` pair the decoder passed to a layer, each `(batch, seq, head_dim)`."""
        return layer_kwargs["position_embeddings"]

    def check_layer_call(self, args: tuple, layer_kwargs: dict) -> None:
        """Refuse a layer call this module does not recognise (checked at the first forward after ``wrap``).

        Recognised: the hidden state as the only positional argument; the cache (or ``None``) under
        :attr:`layer_cache_argument` and no cache object under another name; ``position_embeddings`` as a
        ``(cos, sin)`` pair of tensors; a cache whose ``layers[i]`` hold ``keys`` per attention layer.

        Raises:
            UnrecognisedCallError: naming what differs and the installed transformers version.
        """
        where = f"{type(self.layers[0]).__name__} on {_installed()}"
        if args:
            raise UnrecognisedCallError(f"{where} is called with {len(args) + 1} positional arguments; "
                                        "lvlm_skip expects the hidden state only")
        for name, value in layer_kwargs.items():
            if isinstance(value, Cache) and name != self.layer_cache_argument:
                raise UnrecognisedCallError(f"{where} receives its cache as {name!r}; lvlm_skip expects "
                                            f"{self.layer_cache_argument!r}")
        rope = layer_kwargs.get("position_embeddings")
        if not (isinstance(rope, tuple) and len(rope) == 2 and all(isinstance(t, torch.Tensor) for t in rope)):
            raise UnrecognisedCallError(f"{where} receives no position_embeddings (cos, sin) pair; "
                                        "lvlm_skip needs it to write skipped layers' K/V")
        cache = self.layer_cache(layer_kwargs)
        if cache is not None and not isinstance(getattr(cache, "layers", None), list):
            raise UnrecognisedCallError(f"{where}: its {type(cache).__name__} has no per-layer list .layers")

    def cache_layer(self, cache, layer: int):
        """The per-layer entry of ``cache`` that 1-based ``layer``'s attention writes."""
        return cache.layers[self.layers[layer - 1].self_attn.layer_idx]

    @staticmethod
    def cached_length(cache) -> int:
        """Positions already in ``cache`` (transformers reads them from its first layer); 0 for none."""
        return 0 if cache is None else int(cache.get_seq_length())

    def forward_positions(self, args: tuple, model_kwargs: dict) -> tuple[int, int]:
        """``(cached, new)`` of a model ``forward`` call: positions already in its KV cache, positions it adds.

        What :class:`lvlm_skip.clock.SequenceClock` places a forward by.
        """
        return self.cached_length(self.model_cache(model_kwargs)), self.query_length(args, model_kwargs)


def _final_logit_transform(model: nn.Module) -> dict[str, Any]:
    """``logit_scale`` / ``logit_softcap`` / ``masked_tokens`` of :class:`ModelAnatomy`: what the model's ``forward``
    does to its head's logits.

    Read from the class's own ``forward`` (Gemma3ForConditionalGeneration has ``final_logit_softcapping``
    in its config but does not apply it on 5.x; PaliGemma and AyaVision apply theirs), with the values
    from the text config (then the top config).
    """
    try:
        source = inspect.getsource(type(model).forward)
    except (OSError, TypeError):
        return {}
    configs = (model.config.get_text_config(), model.config)

    def config_value(name: str) -> float | None:  # the text config's, else the top config's
        return next((float(getattr(c, name)) for c in configs if getattr(c, name, None) is not None), None)

    found: dict[str, Any] = {}
    if re.search(r"logits\s*=\s*logits\s*\*\s*self\.[\w.]*logit_scale", source):
        found["logit_scale"] = config_value("logit_scale")
    if "final_logit_softcapping" in source and "tanh" in source:
        found["logit_softcap"] = config_value("final_logit_softcapping")
    if re.search(r"image_tokens\s*=\s*self\.model\.vocabulary_mapping\.image_tokens", source) and re.search(
            r"logits\[:, :, image_tokens\]\s*=\s*torch\.finfo", source):  # Chameleon
        found["masked_tokens"] = tuple(int(t) for t in model.model.vocabulary_mapping.image_tokens) or None
    return {name: value for name, value in found.items() if value is not None}


def _decoder_unpacks_layer_tuple(decoder_forward) -> bool:
    """Does the decoder read ``layer_outputs[0]`` from each layer (Chameleon on 5.x) instead of the bare tensor?

    Layers' return annotations are unreliable (Gemma 3 declares a tuple and returns a tensor), so this reads
    the decoder's own loop.
    """
    try:
        source = inspect.getsource(decoder_forward)
    except (OSError, TypeError):
        return False
    return re.search(r"hidden_states\s*=\s*layer_outputs\[0\]", source) is not None


def unpack_layer_output(output) -> torch.Tensor:
    """The hidden state a decoder layer returned: a bare tensor in transformers 5.x, a tuple's first before.

    Raises:
        UnrecognisedCallError: the output is neither a tensor nor a tuple starting with one.
    """
    hidden = output[0] if isinstance(output, tuple) and output else output
    if not isinstance(hidden, torch.Tensor):
        raise UnrecognisedCallError(f"a decoder layer returned {type(output).__name__} on {_installed()}; "
                                    "lvlm_skip expects a tensor (or a tuple starting with one)")
    return hidden


def project_kv_into_cache_(
    layer: nn.Module,
    hidden_in: torch.Tensor,
    position_embeddings: tuple[torch.Tensor, torch.Tensor],
    cache,
) -> None:
    """Append to ``cache`` the keys/values ``layer`` would have written for ``hidden_in``.

    This is CALM's propagation policy for a layer skipped at some positions: its attention cache at
    those positions holds the K/V projections of the hidden state that entered the layer (which, for
    a skipped span, is the hidden state that entered the span). It costs the two K/V projections
    (``2 * hidden * kv_dim`` MACs per token) instead of the whole layer.

    Args:
        layer: A Llama-style decoder layer (``input_layernorm``, ``self_attn.k_proj/v_proj``,
            optional ``self_attn.k_norm``), whose modeling module defines ``apply_rotary_pos_emb``.
        hidden_in: `(batch, seq, hidden)` the layer's input at the skipped positions.
        position_embeddings: The ``(cos, sin)`` pair the decoder passed to the layer.
        cache: The cache object the decoder passed to the layer.

    Raises:
        UnsupportedModelError: the layer is not Llama-style.
    """
    attn = getattr(layer, "self_attn", None)
    module = sys.modules.get(type(attn).__module__) if attn is not None else None
    apply_rope = getattr(module, "apply_rotary_pos_emb", None)
    norm = getattr(layer, "input_layernorm", None)
    if attn is None or apply_rope is None or norm is None or not hasattr(attn, "k_proj"):
        raise UnsupportedModelError(
            f"cannot project K/V for {type(layer).__name__}: looked for input_layernorm, self_attn.k_proj/v_proj "
            "and apply_rotary_pos_emb in its modeling module"
        )
    # 1. the layer's own pre-attention norm and projections, heads split as the attention does
    normed = norm(hidden_in)
    head_shape = (*normed.shape[:-1], -1, attn.head_dim)
    keys = attn.k_proj(normed).view(head_shape)  # shape: (batch, seq, kv_heads, head_dim)
    if hasattr(attn, "k_norm"):
        keys = attn.k_norm(keys)
    keys = keys.transpose(1, 2)  # shape: (batch, kv_heads, seq, head_dim)
    values = attn.v_proj(normed).view(head_shape).transpose(1, 2)
    # 2. rotary position embedding of the keys (the function rotates q and k; we pass keys twice), where the
    #    layer applies it
    if attention_applies_rope(attn):
        cos, sin = position_embeddings
        _, keys = apply_rope(keys, keys, cos, sin)
    # 3. write them where the layer would have
    cache.update(keys, values, attn.layer_idx)


def attention_applies_rope(attn: nn.Module) -> bool:
    """Does this attention module rotate its keys? Read from its class's ``forward``.

    Cohere 2 (AyaVision's decoder) rotates only in its sliding-window layers
    (``if self.sliding_window is not None: ... apply_rotary_pos_emb``); its full-attention layers use no
    positional encoding. A ``use_rope`` attribute (Llama 4's NoPE layers) is honoured too.
    Everything else rotates.
    """
    if getattr(attn, "use_rope", True) is False:
        return False
    try:
        source = inspect.getsource(type(attn).forward)
    except (OSError, TypeError):
        return True
    if re.search(r"if\s+self\.sliding_window\s+is\s+not\s+None\s*:\s*\n\s*\w+\s*,\s*\w+\s*=\s*apply_rotary_pos_emb", source):
        return getattr(attn, "sliding_window", None) is not None
    return True


def drop_cache_positions_(anatomy: ModelAnatomy, cache, layers, count: int) -> None:
    """Remove the last ``count`` positions of the 1-based ``layers``' caches, so those layers can run them again.

    Dynamic caches (``DynamicCache``, transformers' default in ``generate``) are cropped; a static cache
    needs nothing, because running the position again overwrites its slots; a cross-attention layer's cache
    holds the image, not positions, and is left as it is.

    Raises:
        UnsupportedModelError: a cache layer type that can be neither cropped nor overwritten.
    """
    if cache is None:
        return
    for layer in layers:
        if layer in anatomy.cross_attention_layers:
            continue
        cache_layer = anatomy.cache_layer(cache, layer)
        if hasattr(cache_layer, "max_cache_len"):  # static: update() writes at cache_position
            continue
        if not hasattr(cache_layer, "crop"):
            raise UnsupportedModelError(f"cannot drop positions from a {type(cache_layer).__name__} cache layer")
        cache_layer.crop(-count)


#: layer-call keywords with a query-position dimension that :func:`last_query_layer_kwargs` cuts (last dimension)
_QUERY_POSITION_KWARGS = ("position_ids", "cache_position")


def last_query_layer_kwargs(layer_kwargs: dict) -> dict | None:
    """A layer call's keyword arguments cut to its last query position, or ``None`` where they cannot be cut.

    Cut: ``position_embeddings`` ``(cos, sin)`` on their position dimension (``-2``), a 4D ``attention_mask``
    `(batch, 1, queries, keys)` to its last query row, ``position_ids`` / ``cache_position`` to their last entry.
    ``None`` for a mask that is not a 4D tensor (flex attention's block mask) or any other tensor argument, whose
    layout this does not know (then the caller runs the whole call).
    """
    cut = dict(layer_kwargs)
    for name, value in layer_kwargs.items():
        if name == "attention_mask":
            if value is not None and not (isinstance(value, torch.Tensor) and value.dim() == 4):
                return None
            cut[name] = None if value is None else value[..., -1:, :]
        elif name == "position_embeddings":
            cut[name] = tuple(t[..., -1:, :] for t in value)
        elif name in _QUERY_POSITION_KWARGS:
            cut[name] = value[..., -1:] if isinstance(value, torch.Tensor) else value
        elif isinstance(value, torch.Tensor):
            return None
    return cut


def cache_positions(anatomy: ModelAnatomy, cache, layer: int, start: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Copies of 1-based ``layer``'s cached keys and values from position ``start`` on, `(batch, heads, n, head_dim)`."""
    cache_layer = anatomy.cache_layer(cache, layer)
    return cache_layer.keys[..., start:, :].clone(), cache_layer.values[..., start:, :].clone()


def append_to_cache_(anatomy: ModelAnatomy, cache, layer: int, keys: torch.Tensor, values: torch.Tensor) -> None:
    """Append keys / values `(batch, heads, n, head_dim)` to 1-based ``layer``'s cache, as its attention would."""
    cache.update(keys, values, anatomy.layers[layer - 1].self_attn.layer_idx)


def crop_cache_to_(anatomy: ModelAnatomy, cache, length: int) -> None:
    """Cut every self-attention layer's cache back to its first ``length`` positions (layers already shorter, e.g.
    skipped by a draft, are left as they are; a cross-attention layer's cache holds the image and is kept).

    Raises:
        UnsupportedModelError: a cache layer that cannot be cropped (a static cache, or a full sliding window).
    """
    for layer in range(1, anatomy.num_layers + 1):
        if layer in anatomy.cross_attention_layers:
            continue
        cache_layer = anatomy.cache_layer(cache, layer)
        if not hasattr(cache_layer, "crop") or hasattr(cache_layer, "max_cache_len"):
            raise UnsupportedModelError(f"cannot roll back a {type(cache_layer).__name__} cache layer; use a dynamic cache")
        extra = int(cache_layer.get_seq_length()) - length
        if extra > 0:
            cache_layer.crop(-extra)


class ReservedDynamicLayer(DynamicLayer):
    """A ``DynamicLayer`` that appends into reserved room instead of concatenating.

    transformers' ``DynamicLayer.update`` builds new key and value tensors by ``torch.cat`` at every forward, so a
    decoding step copies the whole cache: at batch 8 with LLaVA's 576 visual tokens that copy is most of a CPU
    step. This layer keeps buffers `(batch, heads, capacity, head_dim)` with room for ``reserve`` positions (the
    prompt and every new token), writes each update in place, and hands attention views of the filled part, so
    attention reads the same values. Everything that assigns ``keys`` / ``values`` (crop, batch selection, beam
    reordering, offloading) stores the assigned tensor as the new buffer, and the next update that outgrows it
    moves to a fresh one with room to double. Tested against ``DynamicLayer`` operation by operation.
    """

    def __init__(self, reserve: int = 0):
        self.reserve = reserve
        self._key_buffer = self._value_buffer = None
        self._key_length = self._value_length = 0
        super().__init__()

    @staticmethod
    def _length(tensor) -> int:
        return tensor.shape[-2] if tensor is not None and tensor.dim() == 4 else 0

    @property
    def keys(self):
        return None if self._key_buffer is None else self._key_buffer[..., : self._key_length, :]

    @keys.setter
    def keys(self, tensor):
        self._key_buffer, self._key_length = tensor, self._length(tensor)

    @property
    def values(self):
        return None if self._value_buffer is None else self._value_buffer[..., : self._value_length, :]

    @values.setter
    def values(self, tensor):
        self._value_buffer, self._value_length = tensor, self._length(tensor)

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        self._key_buffer, self._key_length = self._append(self._key_buffer, self._key_length, key_states)
        self._value_buffer, self._value_length = self._append(self._value_buffer, self._value_length, value_states)
        return self.keys, self.values

    def _append(self, buffer, length: int, states: torch.Tensor):
        new = states.shape[-2]
        fits = (buffer is not None and buffer.dim() == 4 and length + new <= buffer.shape[-2]
                and buffer.shape[:-2] == states.shape[:-2] and buffer.dtype == states.dtype)
        if not fits:
            grown = states.new_empty(*states.shape[:-2], max(length + new, self.reserve, 2 * length), states.shape[-1])
            if length:
                grown[..., :length, :] = buffer[..., :length, :]
            buffer = grown
        buffer[..., length: length + new, :] = states
        return buffer, length + new

    def get_seq_length(self) -> int:
        return self._key_length if self.is_initialized else 0


def reserved_cache(model: nn.Module, reserve: int) -> DynamicCache:
    """A ``DynamicCache`` for ``model`` whose full-attention layers are :class:`ReservedDynamicLayer` with room for
    ``reserve`` positions (other layer types, e.g. sliding windows, stay transformers'). Pass it to ``generate``
    under the model's cache keyword (:attr:`ModelAnatomy.model_cache_argument`); ``generate`` fills it as its own."""
    cache = DynamicCache(config=model.config)
    cache.layers = [ReservedDynamicLayer(reserve) if type(layer) is DynamicLayer else layer for layer in cache.layers]
    return cache


#: The processor outputs a shared-prefix batch may carry: an image per row, 1D positions (LLaVA-1.5's shape).
_SHARED_PREFIX_INPUTS = frozenset({"input_ids", "attention_mask", "pixel_values"})


def shares_prefixes(model: nn.Module, inputs: dict) -> bool:
    """Whether ``model`` can answer ``inputs`` (a processor's batch) with shared image prefixes (:mod:`lvlm_skip.prefixes`).

    It can when the batch holds one image per row and nothing else (no image sizes, grids or aspect ratios:
    LLaVA-NeXT, Qwen2-VL and Mllama are answered the usual way), the model has image placeholders, its positions are
    1D (no multimodal RoPE, whose positions depend on the whole prompt) and every layer attends to the whole cache.
    """
    pixels = inputs.get("pixel_values")
    if set(inputs) - _SHARED_PREFIX_INPUTS or pixels is None or pixels.shape[0] != inputs["input_ids"].shape[0]:
        return False
    text = model.config.get_text_config()
    rope = getattr(text, "rope_parameters", None) or getattr(text, "rope_scaling", None) or {}
    if not placeholder_token_ids(model) or hasattr(model, "get_rope_index") or "mrope_section" in rope:
        return False
    return not ModelAnatomy.from_model(model).has_sliding_window_layers


def shared_prefix_cache(model: nn.Module, batch, pixel_values: torch.Tensor, reserve: int) -> DynamicCache:
    """The K/V of ``batch``'s prefixes (a :class:`lvlm_skip.prefixes.SharedPrefixBatch`), one forward for the distinct
    ones, copied to every row: a :func:`reserved_cache` of `(batch, ..., P, ...)` with room for ``reserve`` positions.

    ``model`` must be the stock model (unwrapped): the cache is what its prefill would have written at those
    positions. ``pixel_values``: `(batch, ...)` the rows' images; each prefix gets its row's.
    """
    anatomy = ModelAnatomy.from_model(model)
    prefixes = reserved_cache(model, batch.prefix_length)
    model(input_ids=batch.prefix_ids, attention_mask=batch.prefix_mask, position_ids=batch.prefix_positions,
          pixel_values=pixel_values[batch.prefix_rows], use_cache=True, logits_to_keep=1,
          **{anatomy.model_cache_argument: prefixes})
    cache = reserved_cache(model, reserve)
    for index, layer in enumerate(prefixes.layers):
        cache.update(layer.keys[batch.groups], layer.values[batch.groups], index)
    return cache


def eos_token_ids(model: nn.Module) -> frozenset[int]:
    """The token ids that end a sequence: the generation config's ``eos_token_id`` (an int or a list), else
    the text config's; empty when neither has one. ``generate`` stops on the same ids."""
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if eos is None:
        eos = getattr(model.config.get_text_config(), "eos_token_id", None)
    return token_id_set(eos)


def token_id_set(ids) -> frozenset[int]:
    """Token ids as a config or generation config gives them (``None``, an int, a list or a tensor) as a set."""
    if ids is None:
        return frozenset()
    if isinstance(ids, torch.Tensor):
        return frozenset(int(i) for i in ids.reshape(-1).tolist())
    return frozenset(int(i) for i in (ids if isinstance(ids, (list, tuple)) else [ids]))


#: The config attributes that name a vision-language model's placeholder tokens (the prompt's stand-ins for an
#: image's or a video's features, which the model's forward counts and replaces).
_PLACEHOLDER_CONFIG_NAMES = ("image_token_id", "image_token_index", "video_token_id", "video_token_index")


def placeholder_token_ids(model: nn.Module) -> frozenset[int]:
    """The ids of the model's image / video placeholder tokens, from its config; empty for a text model.

    A placeholder is never an answer: the model's forward replaces each with an image feature, and a forward whose
    ``input_ids`` hold more placeholders than features fails (LLaVA: "Image features and image tokens do not
    match"). transformers' prompt lookup copies prompt n-grams as candidates, placeholders included, unless a
    logits processor forbids them.
    """
    return frozenset(int(value) for name in _PLACEHOLDER_CONFIG_NAMES
                     if isinstance(value := getattr(model.config, name, None), int) and value >= 0)


def language_model_of(model: nn.Module) -> nn.Module:
    """The model's language model alone: a causal LM of its text config that shares its decoder and LM head.

    A text model is returned as it is. For a vision-language model (``LlavaForConditionalGeneration``) this is
    ``AutoModelForCausalLM`` of ``config.get_text_config()`` (``LlamaForCausalLM``) holding the same decoder and
    head modules (no copy): on a text prompt it computes the model's own logits (tested). Tools written for text
    models need it, e.g. transformers' early-exit assistant (``generate(assistant_early_exit=...)``), which reads
    ``config.num_hidden_layers``, a field that vision-language configs lack.

    Raises:
        UnsupportedModelError: no causal LM class for the text config, a decoder of another class than that LM's,
            or a model that transforms its head's logits (scale, soft-cap, mask) differently from that LM.
    """
    text_config = model.config.get_text_config()
    if text_config is model.config:
        return model
    anatomy = ModelAnatomy.from_model(model)
    name = type(model).__name__
    try:
        with torch.device("meta"):
            language_model = AutoModelForCausalLM.from_config(text_config)
    except ValueError as error:
        raise UnsupportedModelError(f"{name}'s text config ({type(text_config).__name__}) has no causal LM class: "
                                    f"{str(error).splitlines()[0]}") from None
    prefix = language_model.base_model_prefix
    if type(getattr(language_model, prefix, None)) is not type(anatomy.decoder):
        raise UnsupportedModelError(f"{name}'s decoder is a {type(anatomy.decoder).__name__}, not the "
                                    f"{type(getattr(language_model, prefix, None)).__name__} of "
                                    f"{type(language_model).__name__}: its language model cannot be used alone")
    setattr(language_model, prefix, anatomy.decoder)
    language_model.set_output_embeddings(anatomy.lm_head)
    language_model.generation_config = copy.deepcopy(model.generation_config)
    language_model.eval()
    own = ModelAnatomy.from_model(language_model)
    transform = ("logit_scale", "logit_softcap", "masked_tokens")
    if any(getattr(own, t) != getattr(anatomy, t) for t in transform):
        raise UnsupportedModelError(f"{name} transforms its logits differently from {type(language_model).__name__} "
                                    f"({', '.join(f'{t} {getattr(anatomy, t)} vs {getattr(own, t)}' for t in transform)})")
    return language_model


def encode_images(model: nn.Module, image_inputs: dict):
    """The model's own image encoding, as ``generate`` computes it before decoding (transformers >= 5.2).

    ``generate`` runs the vision tower once and hands every forward ``mm_encoder_outputs={"image": ...}``
    instead of the pixels. This computes that entry for other pixels (e.g. a noised copy).

    Args:
        model: A vision-language model whose base model has ``get_image_features``.
        image_inputs: The processor's image inputs (``pixel_values`` and, for some models, sizes).

    Returns:
        The encoder output to pass as ``mm_encoder_outputs["image"]``.

    Raises:
        UnsupportedModelError: the model has no ``get_image_features``.
    """
    encode = getattr(getattr(model, "base_model", model), "get_image_features", None)
    if encode is None:
        raise UnsupportedModelError(f"{type(model).__name__} has no get_image_features to encode images")
    accepted = set(inspect.signature(encode).parameters) - {"kwargs"}
    return encode(**{k: v for k, v in image_inputs.items() if k in accepted}, return_dict=True)
