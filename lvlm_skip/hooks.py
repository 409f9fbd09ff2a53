"""Every hook and method patch lvlm_skip puts on a model, each removable exactly.

* :func:`record_last_position_states` / :class:`LastPositionHooks`: read the predicting position's
  state at every depth (never modify it);
* :class:`LayerRouting`: route every decoder layer's ``forward`` through a runner (skipping);
* :class:`HeadRouting`: pass the LM head's output through a function (online decisions);
* :class:`ForwardRouting`: wrap the model's own ``forward`` (decoding-time peers);
* :class:`SequenceClockHook`: advance the :class:`~lvlm_skip.clock.SequenceClock` at every model forward
  (skips and peers).

Hooks are registered with ``prepend=True`` so that they run before the hooks transformers uses to
collect ``output_hidden_states``. Patches are instance attributes: the module tree, parameters and
state dict are untouched, and removing them restores the previous attribute exactly.

``torch.compile``: every routed function is excluded from compilation (:func:`torch.compiler.disable`),
so a wrapped model can be compiled: the compiled graph calls the routing eagerly, with its Python
decisions, instead of tracing (and re-tracing per layer and per shape) into it. The layers a routing
runs then run eagerly too.
"""

from __future__ import annotations

import functools
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from .anatomy import ModelAnatomy, unpack_layer_output
from .clock import SequenceClock


@dataclass
class LastPositionRecorder:
    """Per forward call of the decoder, the un-normed state of the last position at every depth.

    ``calls[t]`` is `(L + 1, batch, hidden)`: row 0 the input embeddings (``h_0``), row ``j`` layer
    ``j``'s output, all before the final norm, on the LM head's device. With greedy decoding and a KV cache, call ``t`` is
    the forward that predicts generated token ``t``. A layer the decoder passes over (Mllama's cross-attention
    layers on a prompt without an image) is the identity: its row repeats the one before.
    """

    num_layers: int
    device: torch.device | None = None
    calls: list[torch.Tensor] = field(default_factory=list)
    _current: list[torch.Tensor | None] = field(default_factory=list)

    def _start(self, hidden: torch.Tensor) -> None:
        self._current = [None] * (self.num_layers + 1)
        self._current[0] = hidden[:, -1].detach().to(self.device)

    def _layer(self, layer: int, hidden: torch.Tensor) -> None:
        last = max(j for j in range(layer) if self._current[j] is not None)
        for j in range(last + 1, layer):  # layers the decoder passed over (Mllama's cross-attention, no image)
            self._current[j] = self._current[last]
        self._current[layer] = hidden[:, -1].detach().to(self.device)
        if layer == self.num_layers:
            self.calls.append(torch.stack(self._current))
            self._current = []


class LastPositionHooks:
    """Feeds a :class:`LastPositionRecorder` from every decoder forward until :meth:`remove`."""

    def __init__(self, anatomy: ModelAnatomy):
        self.recorder = recorder = LastPositionRecorder(anatomy.num_layers, anatomy.head_device)
        self._handles = [
            anatomy.layers[0].register_forward_pre_hook(
                lambda module, args, kwargs: recorder._start(ModelAnatomy.split_layer_call(args, kwargs)[0]),
                with_kwargs=True,
                prepend=True,
            )
        ]
        for j, layer in enumerate(anatomy.layers, start=1):
            self._handles.append(
                layer.register_forward_hook(
                    lambda module, args, output, j=j: recorder._layer(j, unpack_layer_output(output)),
                    prepend=True,
                )
            )

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


@contextmanager
def record_last_position_states(anatomy: ModelAnatomy):
    """Record :class:`LastPositionRecorder` states for every decoder forward run inside the block.

    Yields:
        The recorder; its ``calls`` grows by one `(L + 1, batch, hidden)` tensor per forward.
    """
    hooks = LastPositionHooks(anatomy)
    try:
        yield hooks.recorder
    finally:
        hooks.remove()


class LayerRouting:
    """Routes every decoder layer's ``forward`` through ``runner`` until :meth:`remove`.

    ``runner(layer, forward, forwards, hidden, args, kwargs)`` receives the 1-based layer number, the
    layer's own forward (whatever it was before: the class method, or accelerate's device hook),
    all layers' forwards, and the call's arguments. The patch is an instance attribute, so the
    module tree, its parameters and its state dict are untouched, and transformers' own hooks
    (``output_hidden_states``) still run around each layer.
    """

    def __init__(self, anatomy: ModelAnatomy, runner):
        self._layers = list(anatomy.layers)
        self._previous = [layer.__dict__.get("forward") for layer in self._layers]
        forwards = [layer.forward for layer in self._layers]
        for j, layer in enumerate(self._layers, start=1):
            layer.forward = self._patched(runner, j, forwards[j - 1], forwards, anatomy.pack_layer_output)

    @staticmethod
    def _patched(runner, layer: int, forward, forwards, pack):
        @torch.compiler.disable
        def routed(*args, **kwargs):
            hidden, args, kwargs = ModelAnatomy.split_layer_call(args, kwargs)
            return pack(runner(layer, forward, forwards, hidden, args, kwargs))

        return routed

    def remove(self) -> None:
        """Restore each layer's previous ``forward`` exactly."""
        for layer, previous in zip(self._layers, self._previous):
            if previous is None:
                layer.__dict__.pop("forward", None)
            else:
                layer.forward = previous


class HeadRouting:
    """Passes the LM head's output of every forward through ``on_logits`` until :meth:`remove`.

    ``on_logits(logits) -> logits`` receives the head's `(batch, positions, vocab)` output (during
    generation the last position only) and returns the logits the model will return, new or the
    same tensor. It runs after every layer of that forward, so a step's whole window of states is
    known by then. Head calls made by ``on_logits`` itself (readouts) pass through untouched.
    """

    def __init__(self, anatomy: ModelAnatomy, on_logits):
        self._on_logits = on_logits
        self._inside = False
        self._handle = anatomy.lm_head.register_forward_hook(self._hook, prepend=True)

    @torch.compiler.disable
    def _hook(self, module, args, output):
        if self._inside:
            return output
        self._inside = True
        try:
            return self._on_logits(output)
        finally:
            self._inside = False

    def remove(self) -> None:
        self._handle.remove()


class ForwardRouting:
    """Routes the model's own ``forward`` through ``wrapper(stock_forward, *args, **kwargs)`` until :meth:`remove`.

    ``functools.wraps`` keeps the stock signature visible, since ``generate`` inspects ``forward``'s
    parameters (e.g. ``logits_to_keep``).
    """

    def __init__(self, model, wrapper):
        self._model = model
        self._previous = model.__dict__.get("forward")
        stock = model.forward

        @functools.wraps(stock)
        @torch.compiler.disable
        def routed(*args, **kwargs):
            return wrapper(stock, *args, **kwargs)

        model.forward = routed

    def remove(self) -> None:
        if self._previous is None:
            self._model.__dict__.pop("forward", None)
        else:
            self._model.forward = self._previous


class SequenceClockHook:
    """Advances ``clock`` by one forward at every call of the model, before its ``forward`` runs, until :meth:`remove`.

    A forward pre-hook on the model itself: it runs before any routing of the model's ``forward``
    (:class:`ForwardRouting`) and before any layer, so both read the forward's place in the sequence
    from the clock. Calls of the stock ``forward`` made by a routing (VCD's second pass) bypass the
    module call, and the clock does not count them.
    """

    def __init__(self, anatomy: ModelAnatomy, clock: SequenceClock):
        self.anatomy = anatomy
        self.clock = clock
        self._handle = anatomy.model.register_forward_pre_hook(self._hook, with_kwargs=True, prepend=True)

    @torch.compiler.disable
    def _hook(self, module, args, kwargs):
        self.clock.advance(*self.anatomy.forward_positions(args, kwargs))

    def remove(self) -> None:
        self._handle.remove()
