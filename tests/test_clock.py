"""The sequence clock (:mod:`lvlm_skip.clock`): one rule for where a forward falls, for skips and peers alike.

First the rule on its own (counts in, positions out), then on a wrapped tiny Llama: the positions the
model's forward pre-hook gives each forward of ``generate``, across ``generate`` calls, with and
without a cache, outside ``generate``, and the refusals.
"""

from __future__ import annotations

import pytest
import torch

import lvlm_skip
from lvlm_skip.anatomy import ModelAnatomy
from lvlm_skip.clock import ForwardPosition, SequenceClock, UnplaceableForwardError
from tiny_models import LOOSE, make_llama

IDS = torch.tensor([[1, 5, 6, 7, 8]])
PROMPT = IDS.shape[1]
GREEDY = dict(max_new_tokens=4, do_sample=False, pad_token_id=0)
WRAPS = {
    "layers": dict(variant="layers", layers=[3, 4]),
    "skip3-online": dict(variant="skip3", mode="online", keep_last=2, detection=LOOSE),
    "dola": dict(variant="dola"),
    "vcd": dict(variant="vcd"),
}


# -- the rule ------------------------------------------------------------------------------------------


def test_an_empty_cache_starts_a_sequence_and_each_single_position_is_the_next_step():
    clock = SequenceClock()
    assert clock.position is None and clock.forwards == 0
    assert clock.advance(0, PROMPT) == ForwardPosition(step=0, cached=0, new=PROMPT)
    assert clock.position.starts_sequence
    for step in (1, 2, 3):
        position = clock.advance(PROMPT + step - 1, 1)
        assert (position.step, position.starts_sequence) == (step, False)
    assert clock.forwards == 4
    # a forward with nothing cached starts a new sequence at any time (no cache: use_cache=False)
    assert clock.advance(0, PROMPT + 3) == ForwardPosition(0, 0, PROMPT + 3)


@pytest.mark.parametrize("cached,new", [(5, 3), (5, 2)])
def test_several_new_positions_after_cached_ones_are_refused(cached, new):
    clock = SequenceClock()
    clock.advance(0, 5)
    with pytest.raises(UnplaceableForwardError, match=rf"^a forward over {new} new positions after {cached} cached ones"):
        clock.advance(cached, new)
    assert clock.forwards == 1 and clock.position.step == 0  # a refused forward moves nothing


def test_after_a_restart_the_next_forward_starts_a_sequence_with_or_without_a_cached_prefix():
    clock = SequenceClock()
    clock.advance(0, 5)
    clock.advance(5, 1)
    clock.restart()
    assert clock.position is None
    assert clock.advance(6, 4) == ForwardPosition(0, 6, 4)  # a prompt whose first 6 positions are cached
    assert clock.advance(10, 1).step == 1
    with pytest.raises(UnplaceableForwardError, match="^a forward over 3 new positions after 11 cached ones"):
        clock.advance(11, 3)  # only the first forward after a restart may follow a cached prefix
    clock.restart()
    assert clock.advance(0, 7).starts_sequence


def test_outside_generate_a_first_forward_after_cached_ones_is_refused():
    with pytest.raises(UnplaceableForwardError, match="^a forward over 1 new positions after 6 cached ones"):
        SequenceClock().advance(6, 1)  # no restart: a cache of some other sequence


# -- on a wrapped model ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def llama():
    return make_llama(8, initializer_range=0.3)


#: The keyword under which this transformers takes a model's KV cache (``cache`` since 5.24).
CACHE = ModelAnatomy.from_model(make_llama(1)).model_cache_argument


def _positions(model, run) -> list[tuple[int, int, int]]:
    """``(step, cached, new)`` of every forward of the wrapped ``model`` inside ``run()``, read from its clock."""
    clock = model._lvlm_skip_state.controller.clock
    seen = []
    handle = model.register_forward_hook(lambda module, args, output: seen.append(
        (clock.position.step, clock.position.cached, clock.position.new)))
    try:
        with torch.no_grad():
            run()
    finally:
        handle.remove()
    return seen


def _decoding(prompt: int, tokens: int, start: int = 0) -> list[tuple[int, int, int]]:
    """The positions of one cached ``generate`` of ``tokens`` tokens after a ``prompt``-position prompt."""
    return [(0, 0, prompt)][start:] + [(t, prompt + t - 1, 1) for t in range(1, tokens)]


@pytest.mark.parametrize("case", WRAPS)
def test_generate_steps_count_from_the_prefill_and_restart_at_each_call(llama, case):
    """Each generate: step 0 over the prompt, then one step per token; a second call counts from 0 again.

    The skip report and the peer report hold one entry per step; VCD's second pass on the noised input
    calls the stock forward, which the clock does not count."""
    with lvlm_skip.skipping(llama, **WRAPS[case]) as run:
        for _ in range(2):
            assert _positions(llama, lambda: llama.generate(IDS, **GREEDY)) == _decoding(PROMPT, 4)
            assert run.report.num_steps == 4
        assert llama._lvlm_skip_state.controller.clock.forwards == 8


@pytest.mark.parametrize("case", ["layers", "dola"])
def test_without_a_cache_every_forward_starts_a_sequence(llama, case):
    """``use_cache=False``: each forward reads the whole sequence, so each is a step 0 over one more position."""
    with lvlm_skip.skipping(llama, **WRAPS[case]) as run:
        seen = _positions(llama, lambda: llama.generate(IDS, use_cache=False, **GREEDY))
        assert seen == [(0, 0, PROMPT + t) for t in range(4)]
        assert run.report.num_steps == 1  # the last sequence: the last forward's


@pytest.mark.parametrize("case", ["layers", "dola"])
def test_a_generate_handed_the_previous_ones_cache_starts_a_new_sequence_after_it(llama, case):
    """A generate handed the previous call's cache starts a new sequence whose prompt prefix is cached (step 0 at
    ``cached = PROMPT + 3``), not step 4 of a sequence the report has already closed."""
    with lvlm_skip.skipping(llama, **WRAPS[case]) as run:
        with torch.no_grad():
            first = llama.generate(IDS, return_dict_in_generate=True, **GREEDY)
            cache = {CACHE: ModelAnatomy.output_cache(first)}
            seen = _positions(llama, lambda: llama.generate(first.sequences, **cache, **GREEDY))
        assert seen[0] == (0, PROMPT + 3, 1) and [s[0] for s in seen] == list(range(len(seen)))
        assert run.report.num_steps == len(seen)


@pytest.mark.parametrize("case", ["layers", "skip3-online", "dola"])
def test_direct_forwards_outside_generate_follow_the_same_rule(llama, case):
    """``model(ids)`` starts a sequence, ``model(token, past_key_values=cache)`` is its next step, and
    the wrapped tokens equal those of the wrapped generate."""
    with lvlm_skip.skipping(llama, **WRAPS[case]):
        with torch.no_grad():
            expected = llama.generate(IDS, **GREEDY)[0, PROMPT:]

        def decode():
            out = llama(IDS, use_cache=True)
            tokens = [out.logits[:, -1].argmax(-1)]
            for _ in range(3):
                cache = {CACHE: ModelAnatomy.output_cache(out)}
                out = llama(tokens[-1][:, None], use_cache=True, **cache)
                tokens.append(out.logits[:, -1].argmax(-1))
            decode.tokens = torch.cat(tokens)

        assert _positions(llama, decode) == _decoding(PROMPT, 4)
        assert torch.equal(decode.tokens, expected)


@pytest.mark.parametrize("case", ["layers", "dola"])
def test_a_forward_the_clock_did_not_see_is_refused(llama, case):
    """``model.forward(...)`` bypasses the module call, so the clock's pre-hook: refused in one line."""
    with lvlm_skip.skipping(llama, **WRAPS[case]):
        with torch.no_grad(), pytest.raises(UnplaceableForwardError, match="without a call of the wrapped model|"
                                                                             "model.forward\\(...\\) was called directly") as info:
            llama.forward(IDS)
        assert "\n" not in str(info.value)
        with torch.no_grad():
            assert _positions(llama, lambda: llama(IDS)) == [(0, 0, PROMPT)]  # the module call is placed
