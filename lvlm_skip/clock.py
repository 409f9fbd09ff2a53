"""The sequence clock: where a model forward falls in a sequence, one rule for the skips and the peers.

A forward over ``new`` positions after ``cached`` ones (both read from the model's KV cache by
:meth:`lvlm_skip.anatomy.ModelAnatomy.forward_positions`) is

* **the start of a sequence** (step 0, the prefill) when nothing is cached: no cache
  (``use_cache=False``, every forward reads the whole sequence) or an empty one;
* **the start of a sequence whose prompt prefix is cached** (step 0 with ``cached > 0``): the first
  forward since the clock's last :meth:`~SequenceClock.restart`, when ``generate`` was handed a cache
  that holds the prompt's first positions (transformers' prefix reuse; the harness shares an image's
  prefix among the rows that ask about it, :mod:`lvlm_skip.prefixes`). The forward runs the rest of
  the prompt; a controller that needs the whole prompt in its prefill refuses it
  (:func:`lvlm_skip.wrapping.accepts_cached_prefix` says which);
* **decoding step** ``t + 1`` when it adds one position to a sequence whose last forward was step ``t``;
* **unplaceable** otherwise: several new positions after cached ones in a started sequence (assisted,
  speculative or prompt-lookup decoding verifies drafts so), or a forward after cached ones outside
  ``generate`` with no sequence placed yet.

One forward pre-hook on the wrapped model (:class:`lvlm_skip.hooks.SequenceClockHook`) advances the
clock at every model forward, before any layer runs; the wrapped ``generate`` restarts it at each
call, so a ``generate`` never continues the previous one's sequence. A direct ``model(...)`` call
outside ``generate`` is placed by the same rule. The clock only counts: what the cache holds is the
anatomy's to read.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import InputError


class UnplaceableForwardError(InputError):
    """A forward that is neither the start of a sequence nor one decoding step (e.g. assisted decoding)."""


@dataclass(frozen=True)
class ForwardPosition:
    """Where one model forward falls in its sequence.

    Attributes:
        step: ``0`` for the forward that starts the sequence (the prefill), ``t`` for the ``t``-th
            decoding step, which predicts generated token ``t``.
        cached: Positions already in the KV cache before this forward (``0`` at a start, except a start
            whose prompt prefix is cached).
        new: Positions this forward adds (the prompt length, or its uncached rest, at the prefill; ``1`` at
            a step).
    """

    step: int
    cached: int
    new: int

    @property
    def starts_sequence(self) -> bool:
        """This forward is the prefill of a new sequence."""
        return self.step == 0


class SequenceClock:
    """Counts the forwards of the current sequence: its start and each decoding step.

    Attributes:
        position: The current (last) forward's :class:`ForwardPosition`; ``None`` before the first
            forward after a :meth:`restart`.
        forwards: Forwards placed since the clock was made (never reset): a reader that sees the same
            count twice knows no model forward ran in between.
    """

    def __init__(self) -> None:
        self.position: ForwardPosition | None = None
        self.forwards = 0
        self._restarted = False  # restarted and no forward since: a cached prefix may start the sequence

    def restart(self) -> None:
        """Forget the current sequence: the next forward starts one (called by the wrapped ``generate``), with
        or without a cached prompt prefix."""
        self.position = None
        self._restarted = True

    def advance(self, cached: int, new: int) -> ForwardPosition:
        """Place the next forward, over ``new`` positions after ``cached`` ones, and make it the current one.

        Raises:
            UnplaceableForwardError: the forward is neither a start nor one step of the current sequence.
        """
        if cached == 0 or self._restarted:
            position = ForwardPosition(0, cached, new)
        elif new == 1 and self.position is not None:
            position = ForwardPosition(self.position.step + 1, cached, new)
        else:
            raise UnplaceableForwardError(
                f"a forward over {new} new positions after {cached} cached ones is neither a prefill nor one "
                "decoding step (assisted, speculative or prompt-lookup decoding?): lvlm_skip's skips and peers "
                "decode one token per forward"
            )
        self.position = position
        self._restarted = False
        self.forwards += 1
        return position
