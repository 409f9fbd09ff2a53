"""Self-speculative decoding: the paper's layers give the draft, the full model verifies it (lossless).

    model = lvlm_skip.wrap(model, variant="speculative", draft="skip3", critical_layer=16, k=4)
    out = model.generate(**inputs, max_new_tokens=64)   # token for token what the stock model generates (greedy)
    lvlm_skip.last_report(model).acceptance_rate

One round, at batch 1 (as transformers' own assisted generation):

1. **Draft.** The same weights with a skip set (``skip1``: the stabilization stage ``c+1 .. m-1``; ``skip3``:
   ``c+1 .. L-keep_last``; ``exit`` at ``e``: ``e+1 .. L``; or explicit ``layers``) propose up to ``k`` tokens one
   at a time, each read out by the model's own norm and head and passed through generate's logits processors.
   ``threshold`` makes ``k`` adaptive: drafting stops after a token whose draft probability is below it (SWIFT,
   LayerSkip); ``schedule="heuristic"`` moves ``k`` between rounds as transformers' assisted generation does
   (``+2`` after a fully accepted round, ``-1`` otherwise); ``schedule="expected"`` drafts, each round, the
   length in ``0 .. k`` that the acceptance so far says pays best, ``0`` being a plain decoding step
   (:class:`ExpectedGainSchedule`), so that a draft the full model keeps rejecting costs little.
2. **Verify.** The caches are cut back to the committed prefix and the full model runs the pending token and
   the ``n`` drafts in one forward; its logits at each position go through the same processors.
3. **Accept.** Greedy: the longest prefix of drafts equal to the full model's argmax, then the full model's own
   token after it (so every round adds at least one token). Sampling: the standard speculative-sampling rule
   (Leviathan et al. 2023, Chen et al. 2023): draft token ``x ~ q`` is kept with probability
   ``min(1, p(x) / q(x))``; at the first rejection a token is drawn from ``max(p - q, 0)`` renormalised; when all
   are kept, one more from ``p``. The output distribution is the full model's.
4. **Commit.** The caches keep the accepted positions; each new token is appended and generate's stopping
   criteria checked after it, so an EOS or ``max_new_tokens`` inside a draft ends the sequence exactly there.

Greedy output equals stock ``generate`` up to floating point: the verify pass computes the same positions in one
forward of ``n + 1`` tokens instead of ``n + 1`` forwards of one, which in float32 / float16 can flip a near-tie
(the report counts rounds, not such flips; ``lvlm-skip speed`` measures token agreement). 

**Lookup** (``lookup=N``). Before the layer draft, a round looks for the sequence's last tokens (an n-gram of up
to ``lookup_ngram``) earlier in the prompt and output; where they recur, the up to ``N`` tokens that followed
them are the round's drafts (prompt lookup decoding, the idea of transformers' ``prompt_lookup_num_tokens``; a
copy that runs into the end of the sequence repeats its period), at no draft cost, and the layer draft runs only
where nothing recurs (:func:`lookup_candidates`). A looked-up draft is a
draft of certainty (``q = 1`` at its token), so the same acceptance rule keeps the output the full model's; the
schedules of ``k`` judge the layer draft's rounds only.

**Reuse.** The layers before the draft's first skipped layer see exactly what the full model sees, so their K/V
and outputs at the drafted positions are the full model's: the verify pass puts that K/V back into their caches
and runs them on the one position the draft never fed (:class:`DraftRouting`), instead of on all ``n + 1``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import torch
from transformers.generation.utils import GenerateDecoderOnlyOutput

from .anatomy import (
    ModelAnatomy,
    UnsupportedModelError,
    append_to_cache_,
    cache_positions,
    crop_cache_to_,
    last_query_layer_kwargs,
    placeholder_token_ids,
    token_id_set,
    unpack_layer_output,
)
from .config import SkipConfig, SpeculativeOptions, build_config
from .hooks import LayerRouting
from .skips.kv import write_skipped_kv
from .variants import skip_variant, static_skip_set


@dataclass(frozen=True)
class SpeculativeConfig:
    """What drafts and how much: the checked :class:`~lvlm_skip.config.SpeculativeOptions` and the layers they
    give on this model. Layer numbers are 1-based."""

    draft_layers: tuple[int, ...]
    """The layers the draft skips (sorted); every other layer runs, then the final norm and the head."""
    options: SpeculativeOptions = field(default_factory=SpeculativeOptions)
    """The draft variant, ``k``, ``threshold``, ``schedule`` and the draft's layer options."""
    profile: str | None = None
    """Provenance: the layer profile that gave the draft's layers, if any."""

    def __post_init__(self):
        if not self.draft_layers:
            raise ValueError("the draft skips no layer: it would be the full model, and every round would cost more")

    @property
    def draft(self) -> str:
        return self.options.draft

    @property
    def k(self) -> int:
        return self.options.k

    @property
    def threshold(self) -> float | None:
        return self.options.threshold

    @property
    def schedule(self) -> str:
        return self.options.schedule

    @property
    def lookup(self) -> int:
        return self.options.lookup

    @property
    def lookup_ngram(self) -> int:
        return self.options.lookup_ngram

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


#: the option names that are the draft's layers (:class:`~lvlm_skip.config.SkipConfig` fields of the same names)
_LAYER_OPTIONS = ("critical_layer", "mutation_layers", "exit_layer", "layers", "keep_last")


def speculative_config(anatomy: ModelAnatomy, draft: str = "skip3", *, profile: str | None = None,
                       **options) -> SpeculativeConfig:
    """The :class:`SpeculativeConfig` of a draft variant and its options, checked against the model.

    Args:
        anatomy: The model's anatomy (its number of layers).
        draft: skip1, skip3, exit or layers.
        profile: Provenance of the layer options, if a profile gave them.
        **options: The other :class:`~lvlm_skip.config.SpeculativeOptions` fields: ``k``, ``threshold``,
            ``schedule``, and the draft's layers (``critical_layer``, ``mutation_layers``, ``exit_layer``,
            ``layers``, ``keep_last``).

    Raises:
        ValueError / TypeError: an unknown draft or option, layers out of range, a draft whose layers are not
            given (the draft is fixed for the whole generation: give them, or a profile), or one that skips nothing.
    """
    known = {f.name for f in dataclasses.fields(SpeculativeOptions)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"unknown speculative option(s) {unknown}; known: {', '.join(sorted(known))}")
    checked = build_config(SpeculativeOptions, draft=draft, **options)
    layer_options = {name: getattr(checked, name) for name in _LAYER_OPTIONS}
    config = SkipConfig.from_kwargs(variant=draft, mode="static", profile=profile, **layer_options)
    config.validate_for(anatomy)
    if not skip_variant(draft).layers_given(config):
        needs = {"skip1": "critical_layer and mutation_layers", "skip3": "critical_layer",
                 "exit": "exit_layer or mutation_layers"}[draft]
        raise ValueError(f"a {draft} draft needs its layers given ({needs}, or a profile): the draft is fixed for "
                         "the whole generation")
    return SpeculativeConfig(draft_layers=tuple(static_skip_set(config, anatomy.num_layers)), options=checked,
                             profile=profile)


@dataclass
class SpeculativeReport:
    """One generation's rounds: per verify pass, the tokens drafted and the drafts accepted.

    ``draft_layer_share`` is the draft's share of the full model's layers, ``(L - |skipped|) / L``: the cost of one
    draft token in full forwards, counting layers only. ``predicted_speedup`` is what the measured acceptance
    and that cost give with no overhead, counting a verify pass as one forward (true where decoding is
    memory-bound, as on a GPU at batch 1): decoding forwards of stock / draft-and-verify forwards.
    """

    config: SpeculativeConfig
    num_layers: int
    drafted: list[int] = field(default_factory=list)
    accepted: list[int] = field(default_factory=list)
    looked_up: list[int] = field(default_factory=list)
    """Per verify pass, how many of its drafted tokens the n-gram lookup gave (all or none; they cost no forward)."""
    new_tokens: int = 0
    reused_positions: int = 0
    """Drafted positions whose :attr:`exact_layers` the verify passes reused instead of recomputing."""
    exact_layers: int = 0
    """The layers before the draft's first skipped one (its K/V and outputs there are the full model's)."""

    @property
    def verifies(self) -> int:
        return len(self.drafted)

    @property
    def acceptance_rate(self) -> float:
        """Accepted / drafted tokens, the layer draft's and the lookup's (NaN before any draft)."""
        drafted = sum(self.drafted)
        return sum(self.accepted) / drafted if drafted else math.nan

    @property
    def _looked_up_per_round(self) -> list[int]:
        """:attr:`looked_up`, or none per round for a report built without it."""
        return self.looked_up or [0] * len(self.drafted)

    @property
    def draft_forwards(self) -> list[int]:
        """Per verify pass, the draft forwards before it: its drafted tokens, unless the n-gram lookup gave them."""
        return [drafted - looked for drafted, looked in zip(self.drafted, self._looked_up_per_round)]

    @property
    def lookup_rounds(self) -> int:
        """Verify passes whose drafts the n-gram lookup gave."""
        return sum(1 for looked in self.looked_up if looked)

    def source_acceptance(self, lookup: bool) -> float:
        """Accepted / drafted tokens of the rounds the lookup drafted (``lookup``) or the layer draft did."""
        rounds = [(d, a) for d, a, looked in zip(self.drafted, self.accepted, self._looked_up_per_round)
                  if bool(looked) == lookup]
        drafted = sum(d for d, _ in rounds)
        return sum(a for _, a in rounds) / drafted if drafted else math.nan

    @property
    def mean_accepted(self) -> float:
        """Draft tokens accepted per verify pass."""
        return sum(self.accepted) / self.verifies if self.verifies else math.nan

    @property
    def draft_layer_share(self) -> float:
        return (self.num_layers - len(self.config.draft_layers)) / self.num_layers

    @property
    def predicted_speedup(self) -> float:
        """Stock's decoding forwards (one per token after the first) / ours (draft tokens at ``draft_layer_share``, plus
        one per verify): :meth:`predicted_speedup_at` the layer share and a verify of one forward."""
        return self.predicted_speedup_at(self.draft_layer_share, 1.0)

    def predicted_speedup_at(self, draft_cost: float, verify_cost: float) -> float:
        """The speedup these rounds give with no overhead when a draft forward costs ``draft_cost`` and a verify pass
        ``verify_cost`` decoding steps of the full model: ``(new_tokens - 1) / (draft forwards * draft_cost +
        verifies * verify_cost)`` (stock makes one step per token after the first; looked-up drafts cost nothing)."""
        cost = sum(self.draft_forwards) * draft_cost + self.verifies * verify_cost
        return (self.new_tokens - 1) / cost if cost else math.nan

    notes: tuple[str, ...] = ()

    def mean_layers_skipped(self) -> float:
        """0: every token is the full model's (the draft's skipped layers are a cost saving, not an intervention)."""
        return 0.0

    def row_layers_skipped(self, row: int, length: int) -> float:
        return 0.0

    def summary(self) -> dict:
        return {"draft": self.config.draft, "draft_layers": list(self.config.draft_layers), "k": self.config.k,
                "threshold": self.config.threshold, "schedule": self.config.schedule, "lookup": self.config.lookup,
                "new_tokens": self.new_tokens, "verifies": self.verifies,
                "drafted": sum(self.drafted), "accepted": sum(self.accepted), "lookup_rounds": self.lookup_rounds,
                "looked_up": sum(self.looked_up), "lookup_acceptance": self.source_acceptance(lookup=True),
                "acceptance_rate": self.acceptance_rate, "mean_accepted": self.mean_accepted,
                "draft_layer_share": self.draft_layer_share, "predicted_speedup": self.predicted_speedup,
                "exact_layers": self.exact_layers, "reused_positions": self.reused_positions}


def lookup_candidates(sequence: torch.Tensor, ngram: int, count: int, forbidden: frozenset[int] = frozenset(),
                      end_tokens: frozenset[int] = frozenset()) -> torch.Tensor:
    """Draft tokens copied from the sequence itself (prompt lookup decoding, Saxena 2023; the idea of transformers'
    ``prompt_lookup_num_tokens``): the tokens that followed the latest earlier occurrence of its last ``n`` tokens.

    Where those tokens run up to the end of the sequence, the copy goes on with what it has just copied: an n-gram
    at ``i`` equal to the suffix says the sequence repeats with period ``P = length - n - i`` from there, and the
    candidates continue that period (``candidate[t] = sequence[i + n + t mod P]``), which is what the next lookups
    would propose once these are accepted. So a run of one token gives ``count`` candidates at once, where copying
    only what follows the match gives 1, 2, 4, ... (transformers' prompt lookup, which takes the first occurrence).

    Args:
        sequence: The committed token ids `(length,)`, prompt and output.
        ngram: The longest suffix to match; ``ngram`` down to 1 are tried, the longest with a match wins.
        count: The most tokens to propose.
        forbidden: Ids never proposed (a vision-language model's image placeholders: its forward counts each as an
            image); the candidates end before the first.
        end_tokens: The generation's EOS ids; the candidates end after the first (as a layer draft stops at one).

    Returns:
        The candidates `(m,)`, ``0 <= m <= count``; empty where no suffix recurs or nothing may follow it.
    """
    length = sequence.shape[0]
    for n in range(min(ngram, length - 1), 0, -1):
        windows = sequence.unfold(0, n, 1)[:-1]  # every earlier n-gram: windows[i] = sequence[i : i + n]
        for start in reversed((windows == sequence[-n:]).all(dim=1).nonzero()[:, 0].tolist()):
            # what followed the match, up to the end (then it repeats: the period) or up to count tokens
            period = sequence[start + n: start + n + count].tolist()
            taken = []
            for t in range(count):
                token = period[t % len(period)]
                if token in forbidden:
                    break
                taken.append(token)
                if token in end_tokens:
                    break
            if taken:
                return torch.tensor(taken, dtype=sequence.dtype, device=sequence.device)
    return sequence.new_empty(0)


def expected_tokens_per_cost(acceptance: float, k: int, draft_cost: float) -> float:
    """Tokens per unit of cost of a round of ``k`` drafts (Leviathan et al. 2023, eq. 1 and Thm. 3.8).

    With each draft token kept with probability ``acceptance`` (alpha) until the first rejection, a round commits
    ``(1 - alpha^(k+1)) / (1 - alpha)`` tokens on average (the accepted drafts and the verify's own token) and costs
    ``k * draft_cost + 1`` decoding steps of the full model (a verify pass counted as one step, as where decoding
    is memory-bound). ``k = 0`` is a plain decoding step: 1.
    """
    tokens = k + 1.0 if acceptance >= 1 else (1 - acceptance ** (k + 1)) / (1 - acceptance)
    return tokens / (k * draft_cost + 1)


def best_draft_length(acceptance: float, draft_cost: float, k_max: int) -> int:
    """The draft length in ``0 .. k_max`` with the most :func:`expected_tokens_per_cost` (the shorter on a tie);
    ``0`` (no draft) where ``acceptance <= draft_cost``, below which even one draft token does not pay."""
    return max(range(k_max + 1), key=lambda k: (expected_tokens_per_cost(acceptance, k, draft_cost), -k))


@dataclass
class ExpectedGainSchedule:
    """``schedule="expected"``: each round drafts :func:`best_draft_length` of the acceptance measured so far.

    **The acceptance** is the per-token rate alpha, estimated from the rounds as accepted drafts over accepted
    drafts plus rejections (a round that rejects a draft gives one failure; drafts after it are never judged), with
    the counts decayed by ``decay`` per drafted round so that recent rounds weigh most (about the last
    ``1 / (1 - decay)``). It starts at 1 (``accepted=1``, ``rejected=0``), so the first round drafts ``k_max``.

    **Probes.** A round of 0 drafts judges no draft, so after ``probe_every`` plain steps in a row one round
    drafts 1 token, and the estimate can recover when the draft starts to agree again. Each rejected probe
    doubles the wait, up to ``max_probe_every`` plain steps; an accepted draft token (or a round that drafts)
    brings it back to ``probe_every``. A draft that is always rejected then costs one draft token per 9, 17,
    33, ... tokens, at most one per ``max_probe_every + 1`` in a long generation.

    ``draft_cost`` is one draft token in decoding steps of the full model: the draft's share of the layers.
    """

    k_max: int
    draft_cost: float
    decay: float = 0.9
    probe_every: int = 8
    max_probe_every: int = 64
    accepted: float = 1.0
    rejected: float = 0.0
    plain_steps: int = 0
    probe_wait: int = 0
    """Plain steps before the next probe (``probe_every`` at first, doubled by each rejected probe)."""
    probing: bool = False
    """The last :meth:`next_length` was a probe."""

    def __post_init__(self):
        if not 1 <= self.probe_every <= self.max_probe_every:
            raise ValueError(f"need 1 <= probe_every <= max_probe_every, got {self.probe_every} and {self.max_probe_every}")
        self.probe_wait = self.probe_wait or self.probe_every

    @property
    def acceptance(self) -> float:
        return self.accepted / (self.accepted + self.rejected)

    def next_length(self) -> int:
        """The next round's draft length (0: a plain step)."""
        k = best_draft_length(self.acceptance, self.draft_cost, self.k_max)
        self.probing = False
        if k:
            self.plain_steps, self.probe_wait = 0, self.probe_every
            return k
        self.plain_steps += 1
        if self.plain_steps > self.probe_wait:
            self.plain_steps, self.probing = 0, True
            return 1
        return 0

    def observe(self, drafted: int, accepted: int) -> None:
        """A round's outcome: ``accepted`` of ``drafted`` draft tokens kept (a round of 0 drafts tells nothing)."""
        if drafted:
            self.accepted = self.decay * self.accepted + accepted
            self.rejected = self.decay * self.rejected + (accepted < drafted)
            if accepted:
                self.probe_wait = self.probe_every
            elif self.probing:
                self.probe_wait = min(2 * self.probe_wait, self.max_probe_every)


class DraftRouting:
    """Every decoder layer routed through :meth:`_run`: the stock layer, except in a round's two phases.

    While :attr:`drafting`, the draft's layers return their input (the layers whose caches size the masks get
    their projected K/V, as a static skip writes them; the verify pass replaces them), and the layers before the
    first skipped one (:attr:`exact_layers`: they see exactly what the full model sees) keep their output at each
    drafted position. In the verify pass (:meth:`begin_verify`) those layers reuse them: the draft's K/V of the
    drafted positions go back into their caches and they run on the last position only.
    """

    def __init__(self, anatomy: ModelAnatomy, layers: tuple[int, ...]):
        self.anatomy = anatomy
        self.skip = frozenset(layers)
        self.exact_layers = tuple(j for j in range(1, min(layers)) if j not in anatomy.cross_attention_layers)
        self.drafting = False
        self._checked = False
        self._draft_outputs: dict[int, list[torch.Tensor]] = {}
        self._verify: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self.reused_positions = 0  # drafted positions whose exact layers the verify passes did not recompute
        self._routing = LayerRouting(anatomy, self._run)

    def begin_draft(self) -> None:
        self._draft_outputs = {j: [] for j in self.exact_layers}
        self.drafting = True

    def begin_verify(self, cache, start: int, drafted: int) -> None:
        """Keep the exact layers' K/V of the ``drafted`` positions from ``start`` on (the caller then cuts every
        cache back to ``start``), for the verify pass to put back instead of recomputing them."""
        self._verify = {}
        if not drafted or cache is None:
            return
        for j in self.exact_layers:
            outputs = self._draft_outputs.get(j, [])
            if len(outputs) != drafted:
                continue
            keys, values = cache_positions(self.anatomy, cache, j, start)
            if keys.shape[-2] == drafted:
                self._verify[j] = (keys, values, torch.cat(outputs, dim=1))

    def end_verify(self) -> None:
        self._verify = {}
        self._draft_outputs = {}

    def _run(self, layer, forward, forwards, hidden, args, kwargs):
        if layer == 1 and not self._checked:
            self.anatomy.check_layer_call(args, kwargs)
            self._checked = True
        if self.drafting:
            if layer in self.skip:
                if layer in self.anatomy.mask_size_layers or layer in self.anatomy.cross_attention_layers:
                    write_skipped_kv(self.anatomy, "project", layer, forward, hidden, args, kwargs)
                return hidden
            out = unpack_layer_output(forward(hidden, *args, **kwargs))
            if layer in self._draft_outputs:
                self._draft_outputs[layer].append(out[:, -1:])
            return out
        reuse = self._verify.get(layer)
        if reuse is not None and hidden.shape[1] == reuse[2].shape[1] + 1:
            last = last_query_layer_kwargs(kwargs)
            if last is not None:  # else (a mask this cannot cut): the whole call, which recomputes them
                keys, values, outputs = reuse
                append_to_cache_(self.anatomy, self.anatomy.layer_cache(kwargs), layer, keys, values)
                new = unpack_layer_output(forward(hidden[:, -1:], *args, **last))
                if layer == self.exact_layers[0]:
                    self.reused_positions += outputs.shape[1]
                return torch.cat([outputs.to(new.dtype), new], dim=1)
        return unpack_layer_output(forward(hidden, *args, **kwargs))

    def remove(self) -> None:
        self._routing.remove()


class SpeculativeDecoder:
    """The state of a wrapped model in speculative mode: its draft routing, and the decoding loop that the wrapped
    ``generate`` hands to transformers as ``custom_generate`` (generate prepares the inputs, the logits processors
    and the stopping criteria as usual)."""

    def __init__(self, model, anatomy: ModelAnatomy, config: SpeculativeConfig):
        if anatomy.has_sliding_window_layers:
            raise UnsupportedModelError(
                f"speculative decoding is not supported on {type(model).__name__}: a rejected draft rolls the caches "
                "back, and its sliding-window caches cannot be cropped once the window is full")
        self.model = model
        self.anatomy = anatomy
        self.config = config
        self.routing = DraftRouting(anatomy, config.draft_layers)
        self._report = SpeculativeReport(config, anatomy.num_layers)

    #: Its loop prefills the prompt it is handed whole, so the harness never hands it a cached prefix.
    accepts_cached_prefix = False

    def install(self) -> list:
        return [self.routing]

    def reset(self) -> None:
        self._report = SpeculativeReport(self.config, self.anatomy.num_layers)

    def report(self) -> SpeculativeReport:
        return self._report

    # -- the loop (transformers' decoding-method signature: GenerationMixin._sample) --------------------------

    def custom_generate(self, streamer=None):
        """The decoding loop for ``generate(custom_generate=...)``. ``streamer``: the caller's, taken out of
        generate's arguments (generate passes a callable none of its own); it gets the prompt first, as from
        generate."""
        decoder = self

        def speculative_decoding(model, input_ids, logits_processor, stopping_criteria, generation_config,
                                 synced_gpus=False, **model_kwargs):
            if streamer is not None:
                streamer.put(input_ids.cpu())
            return decoder.decode(input_ids, logits_processor, stopping_criteria, generation_config, synced_gpus,
                                  streamer, model_kwargs)

        return speculative_decoding

    @torch.no_grad()
    def decode(self, input_ids, logits_processor, stopping_criteria, generation_config, synced_gpus, streamer,
               model_kwargs):
        model, anatomy = self.model, self.anatomy
        self._check_request(input_ids, generation_config, synced_gpus)
        report = self._report = SpeculativeReport(self.config, anatomy.num_layers)
        self.routing.reused_positions = 0
        do_sample = bool(generation_config.do_sample)
        prompt_length = input_ids.shape[1]
        # 1. the prompt: generate's own prefill
        outputs = model._prefill(input_ids, generation_config, model_kwargs)
        model_kwargs = model._update_model_kwargs_for_generation(outputs, model_kwargs, is_encoder_decoder=False)
        cache = anatomy.model_cache(model_kwargs)
        if cache is None:
            raise ValueError("speculative decoding needs a KV cache: do not pass use_cache=False")
        scores = logits_processor(input_ids, outputs.logits[:, -1].to(torch.float32))
        vocab, device = scores.shape[-1], scores.device
        input_ids, done = self._commit(input_ids, _select(scores, do_sample)[:, None], [scores], stopping_criteria,
                                       streamer)
        max_length = generation_config.max_length
        end_tokens = token_id_set(generation_config.eos_token_id)  # a draft stops at one
        k = self.config.k
        expected = (ExpectedGainSchedule(self.config.k, report.draft_layer_share)
                    if self.config.schedule == "expected" else None)
        forbidden = placeholder_token_ids(model)  # never a candidate of the lookup
        while not done:
            committed = input_ids.shape[1]
            room = max_length - committed if max_length is not None else max(k, self.config.lookup) + 1
            # 2. the draft: the n-gram lookup's candidates, where the sequence's suffix recurs; else up to k tokens
            #    from the draft layers
            looked_up = (lookup_candidates(input_ids[0], self.config.lookup_ngram,
                                           min(self.config.lookup, max(room - 1, 0)), forbidden, end_tokens)
                         if self.config.lookup else input_ids.new_empty(0))
            if looked_up.numel():
                candidate = torch.cat([input_ids, looked_up[None]], dim=1)
                draft_probs = ([_point_mass(token, vocab, device) for token in looked_up.tolist()]
                               if do_sample else [])
            else:
                if expected is not None:
                    k = expected.next_length()
                candidate, draft_probs = self._draft(input_ids, model_kwargs, logits_processor, end_tokens,
                                                     do_sample, min(k, max(room - 1, 0)))
            drafted = candidate.shape[1] - committed
            # 3. the verify pass: the pending token and the drafts, through the full model, in one forward (the
            #    layers before the draft's first skipped one reuse the draft's exact K/V and outputs)
            self.routing.begin_verify(cache, committed - 1, drafted)
            crop_cache_to_(anatomy, cache, committed - 1)
            verify_kwargs = model._update_model_kwargs_for_generation({}, dict(model_kwargs), is_encoder_decoder=False,
                                                                       num_new_tokens=drafted)
            inputs = model.prepare_inputs_for_generation(candidate, next_sequence_length=drafted + 1, **verify_kwargs)
            if "logits_to_keep" in inputs:
                inputs["logits_to_keep"] = drafted + 1
            try:
                logits = model(**inputs, return_dict=True).logits[:, -(drafted + 1):].to(torch.float32)
            finally:
                self.routing.end_verify()
            target = [logits_processor(candidate[:, : committed + i], logits[:, i]) for i in range(drafted + 1)]
            # 4. which drafts stand, and the full model's next token
            accepted, token = self._accept(candidate[:, committed:], target, draft_probs, do_sample)
            report.drafted.append(drafted)
            report.accepted.append(accepted)
            report.looked_up.append(int(looked_up.numel()))
            layer_round = not looked_up.numel()  # the schedules of k judge the layer draft only
            if layer_round and self.config.schedule == "heuristic" and drafted:
                k = k + 2 if accepted == drafted else max(1, k - 1)
            elif layer_round and expected is not None:
                expected.observe(drafted, accepted)
            new = torch.cat([candidate[:, committed: committed + accepted], token[:, None]], dim=1)
            crop_cache_to_(anatomy, cache, committed + accepted)
            model_kwargs = model._update_model_kwargs_for_generation({}, model_kwargs, is_encoder_decoder=False,
                                                                     num_new_tokens=accepted + 1)
            input_ids, done = self._commit(input_ids, new, target[: accepted + 1], stopping_criteria, streamer)
        crop_cache_to_(anatomy, cache, input_ids.shape[1] - 1)  # a sequence that stopped inside a round
        report.new_tokens = input_ids.shape[1] - prompt_length
        report.reused_positions = self.routing.reused_positions
        report.exact_layers = len(self.routing.exact_layers)
        if streamer is not None:
            streamer.end()
        if generation_config.return_dict_in_generate:
            names = {f.name for f in dataclasses.fields(GenerateDecoderOnlyOutput)}
            cache_field = "cache" if "cache" in names else "past_key_values"
            return GenerateDecoderOnlyOutput(sequences=input_ids, **{cache_field: cache})
        return input_ids

    def _check_request(self, input_ids, generation_config, synced_gpus) -> None:
        if input_ids.shape[0] != 1:
            raise ValueError(f"speculative decoding runs one sequence at a time (as transformers' assisted generation):"
                             f" got a batch of {input_ids.shape[0]}")
        if (generation_config.num_return_sequences or 1) > 1:
            raise ValueError("speculative decoding returns one sequence: num_return_sequences has to be 1")
        if synced_gpus:
            raise ValueError("speculative decoding does not support synced_gpus")
        wanted = [name for name in ("output_scores", "output_logits", "output_attentions", "output_hidden_states")
                  if getattr(generation_config, name, False)]
        if generation_config.return_dict_in_generate and wanted:
            raise ValueError(f"speculative decoding returns the sequences and the cache only, not {', '.join(wanted)}")

    def _draft(self, input_ids, model_kwargs, logits_processor, end_tokens, do_sample, count):
        """Up to ``count`` draft tokens after ``input_ids``: the candidate `(1, n + drafted)` and, when sampling, the
        draft's distributions (one `(1, vocab)` per token). Drafting stops after a token of ``end_tokens`` (the
        generation's EOS ids); generate's stopping criteria see committed tokens only (:meth:`_commit`), so a
        stateful criterion never sees a draft that is later rejected."""
        model, candidate, kwargs, probs = self.model, input_ids, dict(model_kwargs), []
        self.routing.begin_draft()
        try:
            for _ in range(count):
                inputs = model.prepare_inputs_for_generation(candidate, next_sequence_length=1, **kwargs)
                outputs = model(**inputs, return_dict=True)
                kwargs = model._update_model_kwargs_for_generation({}, kwargs, is_encoder_decoder=False)
                scores = logits_processor(candidate, outputs.logits[:, -1].to(torch.float32))
                distribution = scores.softmax(-1)
                token = _select(scores, do_sample)
                candidate = torch.cat([candidate, token[:, None]], dim=1)
                probs.append(distribution)
                low = self.config.threshold is not None and float(distribution[0, token[0]]) < self.config.threshold
                if low or int(token[0]) in end_tokens:
                    break  # adaptive k, or the draft ends the sequence: verify what there is
        finally:
            self.routing.drafting = False
        return candidate, probs

    @staticmethod
    def _accept(drafts, target, draft_probs, do_sample) -> tuple[int, torch.Tensor]:
        """``(accepted drafts, the next token (1,))`` from the drafts `(1, n)` and the full model's ``n + 1``
        processed logits."""
        n = drafts.shape[1]
        if not do_sample:
            chosen = torch.stack([t.argmax(-1) for t in target], dim=1)  # shape: (1, n + 1)
            agree = (chosen[0, :n] == drafts[0]).long()
            accepted = int(agree.cumprod(0).sum()) if n else 0
            return accepted, chosen[:, accepted]
        for i in range(n):
            p, q, x = target[i].softmax(-1), draft_probs[i], drafts[0, i]
            if torch.rand(()) * q[0, x] <= p[0, x]:  # kept with probability min(1, p(x) / q(x))
                continue
            residual = (p - q).clamp(min=0)
            residual = residual / residual.sum() if float(residual.sum()) > 0 else p
            return i, torch.multinomial(residual, 1)[:, 0]
        return n, torch.multinomial(target[n].softmax(-1), 1)[:, 0]

    def _commit(self, input_ids, new, scores, stopping_criteria, streamer):
        """Append ``new`` `(1, m)` token by token, checking the stopping criteria after each; the streamer then gets
        the tokens committed, `(1, m')`, in one ``put`` (as from transformers' assisted generation)."""
        start, done = input_ids.shape[1], False
        for i in range(new.shape[1]):
            input_ids = torch.cat([input_ids, new[:, i: i + 1]], dim=1)
            if bool(stopping_criteria(input_ids, scores[min(i, len(scores) - 1)]).all()):
                done = True
                break
        if streamer is not None:
            streamer.put(input_ids[:, start:].cpu())
        return input_ids, done


def _point_mass(token: int, width: int, device) -> torch.Tensor:
    """The distribution `(1, width)` of a draft that proposes ``token`` for certain (a looked-up candidate): under
    the sampling rule it is kept with probability ``p(token)``, and a rejection draws from ``p`` without it."""
    distribution = torch.zeros(1, width, device=device)
    distribution[0, token] = 1.0
    return distribution


def _select(scores: torch.Tensor, do_sample: bool) -> torch.Tensor:
    """The next token `(batch,)` of processed `(batch, vocab)` scores: argmax, or a draw from their softmax."""
    return torch.multinomial(scores.softmax(-1), 1)[:, 0] if do_sample else scores.argmax(-1)
