"""Self-speculative decoding (lvlm_skip.speculative): greedy output token-identical to stock generate on LLaVA, Llama
and Qwen2-VL, with EOS, max_new_tokens and stopping criteria inside a draft and generate's logits processors; the
sampling rule's output distribution equal to the full model's; refusals in one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import StoppingCriteria, StoppingCriteriaList

import lvlm_skip
from lvlm_skip.anatomy import UnsupportedModelError
from lvlm_skip.inputs.models import chat_prompt
from lvlm_skip.speculative import SpeculativeDecoder
from tiny_models import make_llama, make_llava, make_qwen2_vl

PROMPT = torch.tensor([[1, 5, 6, 7, 8, 9, 10]])
INPUTS = {"input_ids": PROMPT, "attention_mask": torch.ones_like(PROMPT)}
DRAFTS = [("skip3", {"critical_layer": 2, "keep_last": 1}), ("skip1", {"critical_layer": 2, "mutation_layers": [6]}),
          ("exit", {"exit_layer": 5}), ("layers", {"layers": [4, 7]})]


def _new(out, inputs):
    return out[:, inputs["input_ids"].shape[1]:]


def _speculative(model, inputs, draft="skip3", options=None, **generate):
    options = DRAFTS[0][1] if options is None else options
    with lvlm_skip.skipping(model, variant="speculative", draft=draft, **options) as run, torch.no_grad():
        out = model.generate(**inputs, **generate)
    return _new(out, inputs), run.report


def _stock(model, inputs, **generate):
    with torch.no_grad():
        return _new(model.generate(**inputs, **generate), inputs)


@pytest.fixture(scope="module")
def llama():
    return make_llama(8, dtype=torch.float64, initializer_range=0.3)


@pytest.fixture(scope="module")
def exact_draft_llama():
    """A Llama whose layers 7 and 8 add nothing (their output projections are zero): a draft skipping them is the
    full model, so every draft token is accepted and EOS / max_new_tokens / stopping criteria land inside drafts."""
    model = make_llama(8, dtype=torch.float64, initializer_range=0.3, seed=1)
    for layer in model.model.layers[6:]:
        torch.nn.init.zeros_(layer.self_attn.o_proj.weight)
        torch.nn.init.zeros_(layer.mlp.down_proj.weight)
    return model


EXACT = {"layers": [7, 8]}


@pytest.mark.parametrize("draft,options", DRAFTS, ids=[d for d, _ in DRAFTS])
@pytest.mark.parametrize("k", [1, 3, 8])
def test_greedy_equals_stock_on_llama(llama, draft, options, k):
    generate = dict(max_new_tokens=24, min_new_tokens=24, do_sample=False)
    new, report = _speculative(llama, INPUTS, draft, dict(options, k=k), **generate)
    assert torch.equal(new, _stock(llama, INPUTS, **generate))
    assert report.new_tokens == 24 and sum(report.drafted) > 0 and max(report.drafted) <= k


def test_adaptive_drafting_stops_below_the_threshold(llama):
    generate = dict(max_new_tokens=24, min_new_tokens=24, do_sample=False)
    fixed = _speculative(llama, INPUTS, options=dict(DRAFTS[0][1], k=6), **generate)
    adaptive = _speculative(llama, INPUTS, options=dict(DRAFTS[0][1], k=6, threshold=0.9), **generate)
    stock = _stock(llama, INPUTS, **generate)
    assert torch.equal(fixed[0], stock) and torch.equal(adaptive[0], stock)
    assert sum(adaptive[1].drafted) < sum(fixed[1].drafted)  # random weights: low-confidence drafts stop early


def test_the_heuristic_schedule_moves_k_with_acceptance(llama, exact_draft_llama):
    """transformers' rule: k + 2 after a round whose drafts were all accepted, k - 1 (not below 1) otherwise."""
    generate = dict(max_new_tokens=24, min_new_tokens=24, do_sample=False)
    low, report = _speculative(llama, INPUTS, options=dict(DRAFTS[0][1], k=4, schedule="heuristic"), **generate)
    assert torch.equal(low, _stock(llama, INPUTS, **generate))
    k = 4
    for drafted, accepted in zip(report.drafted, report.accepted):
        assert drafted <= k
        if drafted:  # (none at the very end, where max_new_tokens leaves room for the verify's token only)
            k = k + 2 if accepted == drafted else max(1, k - 1)
    assert report.drafted[:4] == [4, 3, 2, 1]  # random weights: acceptance is low, so k falls to 1
    high, exact = _speculative(exact_draft_llama, INPUTS, "layers", dict(EXACT, k=2, schedule="heuristic"), **generate)
    assert torch.equal(high, _stock(exact_draft_llama, INPUTS, **generate))
    assert exact.drafted[:3] == [2, 4, 6]  # every draft accepted: k grows by 2


def test_greedy_equals_stock_on_llava_with_an_image():
    model, processor = make_llava(8, hidden=64, intermediate=128, seed=3, dtype=torch.float64)
    image = Image.fromarray((np.random.RandomState(0).rand(40, 40, 3) * 255).astype("uint8"))
    inputs = dict(processor(images=image, text=chat_prompt(processor, "describe this image ."), return_tensors="pt"))
    inputs["pixel_values"] = inputs["pixel_values"].double()
    generate = dict(max_new_tokens=16, min_new_tokens=16, do_sample=False, suppress_tokens=[model.config.image_token_id])
    for draft, options in DRAFTS:
        assert torch.equal(_speculative(model, inputs, draft, options, **generate)[0], _stock(model, inputs, **generate))


def test_greedy_equals_stock_on_qwen2_vl():
    model = make_qwen2_vl(8, dtype=torch.float64)
    generate = dict(max_new_tokens=16, min_new_tokens=16, do_sample=False)
    for draft, options in DRAFTS:
        assert torch.equal(_speculative(model, INPUTS, draft, options, **generate)[0], _stock(model, INPUTS, **generate))


def test_an_exact_draft_is_always_accepted(exact_draft_llama):
    generate = dict(max_new_tokens=20, min_new_tokens=20, do_sample=False)
    new, report = _speculative(exact_draft_llama, INPUTS, "layers", dict(EXACT, k=4), **generate)
    assert torch.equal(new, _stock(exact_draft_llama, INPUTS, **generate))
    # the prefill's token, three rounds of 4 drafts + the verify's token, then 3 + 1 to end at 20 exactly
    assert report.drafted == report.accepted == [4, 4, 4, 3] and report.acceptance_rate == 1.0
    assert report.predicted_speedup > 1


@pytest.mark.parametrize("max_new_tokens", [2, 3, 5, 7, 11])
def test_max_new_tokens_inside_a_draft(exact_draft_llama, max_new_tokens):
    generate = dict(max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens, do_sample=False)
    new, report = _speculative(exact_draft_llama, INPUTS, "layers", dict(EXACT, k=4), **generate)
    assert torch.equal(new, _stock(exact_draft_llama, INPUTS, **generate))
    assert new.shape[1] == max_new_tokens == report.new_tokens


def test_eos_inside_a_draft(exact_draft_llama):
    free = _stock(exact_draft_llama, INPUTS, max_new_tokens=12, do_sample=False)[0].tolist()
    for step in (2, 4, 6):  # the token stock emits at this step becomes the EOS: it must end the sequence there
        eos = free[step]
        if eos in free[:step]:
            continue
        generate = dict(max_new_tokens=12, do_sample=False, eos_token_id=eos, pad_token_id=0)
        new, report = _speculative(exact_draft_llama, INPUTS, "layers", dict(EXACT, k=4), **generate)
        assert new[0].tolist() == free[: step + 1] == _stock(exact_draft_llama, INPUTS, **generate)[0].tolist()
        assert report.new_tokens == step + 1


class _StopAfter(StoppingCriteria):
    """Stops once ``token`` has been generated."""

    def __init__(self, token: int):
        self.token = token

    def __call__(self, input_ids, scores, **kwargs):
        return (input_ids[:, -1] == self.token)


def test_stopping_criteria_inside_a_draft(exact_draft_llama):
    free = _stock(exact_draft_llama, INPUTS, max_new_tokens=12, min_new_tokens=12, do_sample=False)[0].tolist()
    token = free[5]
    generate = dict(max_new_tokens=12, do_sample=False, stopping_criteria=StoppingCriteriaList([_StopAfter(token)]))
    new, _ = _speculative(exact_draft_llama, INPUTS, "layers", dict(EXACT, k=4), **generate)
    assert new[0].tolist() == free[: free.index(token) + 1]
    assert torch.equal(new, _stock(exact_draft_llama, INPUTS, **generate))


class _Recorder(StoppingCriteria):
    """Never stops; keeps every sequence it is called on (a stateful criterion)."""

    def __init__(self):
        self.seen = []

    def __call__(self, input_ids, scores, **kwargs):
        self.seen.append(input_ids[0].tolist())
        return torch.zeros(input_ids.shape[0], dtype=torch.bool)


def test_stopping_criteria_see_committed_tokens_only(llama):
    """Drafts that the verify rejects never reach generate's stopping criteria: every sequence a criterion is called
    on is a prefix of the output, each one token longer than the one before (as in stock generate)."""
    recorder = _Recorder()
    generate = dict(max_new_tokens=16, min_new_tokens=16, do_sample=False, stopping_criteria=StoppingCriteriaList([recorder]))
    new, report = _speculative(llama, INPUTS, "skip3", dict(DRAFTS[0][1], k=4), **generate)
    assert sum(report.accepted) < sum(report.drafted)  # random weights: some drafts were rejected
    out = INPUTS["input_ids"][0].tolist() + new[0].tolist()
    assert [len(seen) for seen in recorder.seen] == list(range(len(out) - 15, len(out) + 1))
    assert all(seen == out[: len(seen)] for seen in recorder.seen)


@pytest.mark.parametrize("processors", [dict(repetition_penalty=1.5), dict(no_repeat_ngram_size=2),
                                        dict(suppress_tokens=[60, 83, 49]), dict(min_new_tokens=20, bad_words_ids=[[9]])])
def test_logits_processors_as_stock(llama, processors):
    generate = dict(max_new_tokens=20, do_sample=False, **processors)
    for draft, options in DRAFTS[:2]:
        assert torch.equal(_speculative(llama, INPUTS, draft, options, **generate)[0], _stock(llama, INPUTS, **generate))


def test_returned_cache_holds_the_sequence(llama):
    with lvlm_skip.skipping(llama, variant="speculative", draft="skip3", critical_layer=2) as run, torch.no_grad():
        out = llama.generate(**INPUTS, max_new_tokens=10, min_new_tokens=10, do_sample=False,
                             return_dict_in_generate=True)
    cache = out.cache if hasattr(out, "cache") else out.past_key_values
    assert cache.get_seq_length() == out.sequences.shape[1] - 1
    assert all(layer.keys.shape[-2] == out.sequences.shape[1] - 1 for layer in cache.layers)
    assert run.report.new_tokens == 10


def test_a_streamer_gets_the_prompt_then_every_token(exact_draft_llama):
    class Collect:
        def __init__(self):
            self.puts = []

        def put(self, value):
            self.puts.append(value.reshape(-1).tolist())

        def end(self):
            self.puts.append("end")

    streamer = Collect()
    new, _ = _speculative(exact_draft_llama, INPUTS, "layers", dict(EXACT, k=4), max_new_tokens=9, min_new_tokens=9,
                          do_sample=False, streamer=streamer)
    assert streamer.puts[0] == PROMPT[0].tolist() and streamer.puts[-1] == "end"
    # a verify's committed tokens come in one put, as from transformers' assisted generation
    assert [t for put in streamer.puts[1:-1] for t in put] == new[0].tolist()
    assert max(len(put) for put in streamer.puts[1:-1]) > 1


# -- sampling ------------------------------------------------------------------------------------------------


def test_the_acceptance_rule_gives_the_target_distribution():
    """Draft ``x ~ q``, kept with probability ``min(1, p(x)/q(x))``, else a draw from ``max(p - q, 0)``: the token is
    distributed as ``p``, whatever ``q`` (chi-square over 20000 draws, at a significance far below a false alarm)."""
    from scipy.stats import chisquare

    torch.manual_seed(0)
    vocab, draws = 6, 20000
    p_logits, q_logits = torch.randn(1, vocab) * 1.5, torch.randn(1, vocab) * 1.5
    p, q = p_logits.softmax(-1), q_logits.softmax(-1)
    counts = np.zeros(vocab)
    for _ in range(draws):
        x = torch.multinomial(q, 1)  # (1, 1)
        accepted, token = SpeculativeDecoder._accept(x, [p_logits, p_logits], [q], do_sample=True)
        counts[int(x) if accepted else int(token)] += 1
    expected = p[0].double().numpy()
    assert chisquare(counts, expected / expected.sum() * draws).pvalue > 1e-4
    drafted = np.bincount([int(torch.multinomial(q, 1)) for _ in range(2000)], minlength=vocab)
    assert chisquare(drafted, expected / expected.sum() * 2000).pvalue < 1e-6  # the draft alone is q, not p


SEQUENCES = 1000


def test_sampled_tokens_are_distributed_as_stock_sampling():
    """End to end on a tiny Llama (vocabulary 12): the second generated token (the first one drafted, then checked by
    the rule) has the full model's marginal distribution, computed exactly from its logits (chi-square, 1000
    sequences)."""
    from scipy.stats import chisquare

    model = make_llama(6, dtype=torch.float64, initializer_range=0.5, vocab=12, seed=2)
    prompt = torch.tensor([[1, 5, 6, 7]])
    eos = model.generation_config.eos_token_id  # min_new_tokens suppresses it at both steps
    with torch.no_grad():  # exact: p(t2) = sum_t1 p(t1 | prompt) p(t2 | prompt, t1)
        first = model(prompt).logits[0, -1].index_fill(-1, torch.tensor([eos]), -torch.inf).softmax(-1)
        rows = torch.cat([prompt.expand(12, -1), torch.arange(12)[:, None]], dim=1)
        second = model(rows).logits[:, -1].index_fill(-1, torch.tensor([eos]), -torch.inf).softmax(-1)
        exact = (first[:, None] * second).sum(0).numpy()
    torch.manual_seed(0)
    counts = np.zeros(12)
    inputs = {"input_ids": prompt, "attention_mask": torch.ones_like(prompt)}
    accepted = drafted = 0
    with lvlm_skip.skipping(model, variant="speculative", draft="layers", layers=[3, 4, 5], k=1) as run:
        for _ in range(SEQUENCES):
            with torch.no_grad():
                out = model.generate(**inputs, max_new_tokens=3, min_new_tokens=3, do_sample=True, top_k=0,
                                     temperature=1.0)
            counts[int(out[0, prompt.shape[1] + 1])] += 1
            accepted, drafted = accepted + sum(run.report.accepted), drafted + sum(run.report.drafted)
    assert 0.05 < accepted / drafted < 0.95  # the rule both kept and rejected drafts here
    keep = exact * SEQUENCES >= 5  # chi-square's usual minimum expected count; the rest pooled
    observed = np.append(counts[keep], counts[~keep].sum())
    expected = np.append(exact[keep], exact[~keep].sum())
    expected = expected / expected.sum() * SEQUENCES
    assert chisquare(observed, expected).pvalue > 1e-4


# -- refusals ------------------------------------------------------------------------------------------------


def test_a_batch_is_refused_in_one_line(llama):
    batch = {"input_ids": PROMPT.expand(2, -1), "attention_mask": torch.ones(2, PROMPT.shape[1], dtype=torch.long)}
    with lvlm_skip.skipping(llama, variant="speculative", draft="skip3", critical_layer=2):
        with pytest.raises(ValueError, match="one sequence at a time") as error:
            llama.generate(**batch, max_new_tokens=4)
        assert "\n" not in str(error.value)
        with pytest.raises(ValueError, match="beam search"):
            llama.generate(**INPUTS, max_new_tokens=4, num_beams=2)
        with pytest.raises(ValueError, match="custom_generate"):
            llama.generate(**INPUTS, max_new_tokens=4, custom_generate=lambda *a, **k: None)


@pytest.mark.parametrize("options,match", [
    (dict(draft="skip3"), "needs its layers given"),
    (dict(draft="skip1", critical_layer=2), "needs its layers given"),
    (dict(draft="skip2", mutation_layers=[3]), "unknown draft"),
    (dict(draft="layers", layers=[9]), "out of range"),
    (dict(draft="exit", exit_layer=8), "skips no layer"),
    (dict(draft="layers", layers=[3], k=0), "`k`"),
    (dict(draft="layers", layers=[3], threshold=1.5), "`threshold`"),
    (dict(draft="layers", layers=[3], schedule="fast"), "`schedule`"),
    (dict(draft="layers", layers=[3], mode="online"), "takes no mode"),
    (dict(draft="layers", layers=[3], alpha=1.0), "unknown speculative option"),
])
def test_bad_options_are_one_line_errors(llama, options, match):
    options = dict(options)
    mode = options.pop("mode", None)
    with pytest.raises((ValueError, TypeError), match=match) as error:
        lvlm_skip.wrap(llama, "speculative", mode, **options)
    assert "\n" not in str(error.value) and not lvlm_skip.is_wrapped(llama)


def test_sliding_window_models_are_refused():
    from vlm_zoo import build

    model = build("Gemma3")
    with pytest.raises(UnsupportedModelError, match="sliding-window"):
        lvlm_skip.wrap(model, variant="speculative", draft="layers", layers=[3])
    assert not lvlm_skip.is_wrapped(model)


def test_unwrap_restores_the_model(llama):
    stock = _stock(llama, INPUTS, max_new_tokens=6, do_sample=False)
    forward = llama.forward
    lvlm_skip.wrap(llama, variant="speculative", draft="layers", layers=[3])
    lvlm_skip.unwrap(llama)
    assert "generate" not in llama.__dict__ and llama.forward == forward
    assert all("forward" not in layer.__dict__ for layer in llama.model.layers)
    assert torch.equal(_stock(llama, INPUTS, max_new_tokens=6, do_sample=False), stock)


def test_the_verify_pass_reuses_the_exact_layers(exact_draft_llama):
    """Layers before the draft's first skipped one run on one position in every verify pass (the draft's K/V and
    outputs of the drafted positions are put back), the layers after on all of them; the tokens stay stock's."""
    model = exact_draft_llama
    widths = {j: [] for j in (1, 6, 7, 8)}
    handles = [model.model.layers[j - 1].self_attn.register_forward_pre_hook(lambda m, a, k, j=j: widths[j].append(
        (a[0] if a else k["hidden_states"]).shape[1]), with_kwargs=True) for j in widths]  # inside the layer
    try:
        new, report = _speculative(model, INPUTS, "layers", dict(EXACT, k=4), max_new_tokens=11, min_new_tokens=11,
                                   do_sample=False)
    finally:
        for handle in handles:
            handle.remove()
    assert torch.equal(new, _stock(model, INPUTS, max_new_tokens=11, min_new_tokens=11, do_sample=False))
    assert report.exact_layers == 6 and report.reused_positions == sum(report.drafted) == 8
    assert widths[1][1:] == widths[6][1:] == [1] * (len(widths[1]) - 1)  # after the prompt: one position a call
    assert widths[7][1:] == widths[8][1:] == [5, 5]  # the verify passes only (the draft skips 7 and 8)


def test_expected_tokens_per_cost_and_the_best_length():
    """Leviathan et al.'s rule: one draft pays exactly when its acceptance exceeds its cost."""
    from lvlm_skip.speculative import best_draft_length, expected_tokens_per_cost

    assert expected_tokens_per_cost(0.5, 0, 0.7) == 1.0
    assert expected_tokens_per_cost(0.5, 2, 0.25) == pytest.approx((1 + 0.5 + 0.25) / 1.5)
    assert expected_tokens_per_cost(1.0, 4, 0.5) == pytest.approx(5 / 3)
    assert best_draft_length(0.0, 0.5, 8) == 0
    assert best_draft_length(0.74, 0.75, 8) == 0 and best_draft_length(0.76, 0.75, 8) >= 1
    assert best_draft_length(1.0, 0.5, 8) == 8
    assert best_draft_length(0.9, 0.25, 8) == max(range(9), key=lambda k: expected_tokens_per_cost(0.9, k, 0.25))


def test_the_expected_schedule_estimates_acceptance_and_probes():
    from lvlm_skip.speculative import ExpectedGainSchedule

    schedule = ExpectedGainSchedule(k_max=4, draft_cost=0.75)
    assert schedule.next_length() == 4  # alpha starts at 1
    schedule.observe(4, 0)
    assert schedule.acceptance == pytest.approx(0.9 / 1.9)
    lengths = [schedule.next_length() for _ in range(9)]
    assert lengths == [0] * 8 + [1]  # plain steps, and a one-token probe after 8 of them
    schedule.observe(1, 0)  # rejected: the next probe waits twice as long, and so on up to max_probe_every
    waits = []
    for _ in range(5):
        lengths = []
        while not lengths or lengths[-1] == 0:
            lengths.append(schedule.next_length())
        assert lengths[-1] == 1 and set(lengths[:-1]) == {0}
        waits.append(len(lengths) - 1)
        schedule.observe(1, 0)
    assert waits == [16, 32, 64, 64, 64]
    assert schedule.next_length() == 0
    for _ in range(12):
        schedule.observe(1, 1)  # the draft agrees again: the estimate recovers and drafting resumes
    assert schedule.acceptance > 0.75 and schedule.next_length() >= 1
    schedule.observe(0, 0)  # a plain step judges nothing
    assert schedule.acceptance > 0.75
    assert schedule.probe_wait == 8  # an accepted draft brings the probes back to every 9th token


def test_an_accepted_probe_resets_the_wait_even_while_drafting_does_not_pay():
    from lvlm_skip.speculative import ExpectedGainSchedule

    schedule = ExpectedGainSchedule(k_max=4, draft_cost=0.9, accepted=0.1, rejected=5.0, probe_wait=64)
    schedule.observe(1, 1)
    assert schedule.acceptance < 0.9 and schedule.probe_wait == 8
    with pytest.raises(ValueError, match="probe_every"):
        ExpectedGainSchedule(k_max=4, draft_cost=0.5, probe_every=0)


def test_the_expected_schedule_is_lossless_and_stops_drafting_a_rejected_draft(llama, exact_draft_llama):
    generate = dict(max_new_tokens=32, min_new_tokens=32, do_sample=False)
    low, report = _speculative(llama, INPUTS, options=dict(DRAFTS[0][1], k=4, schedule="expected"), **generate)
    assert torch.equal(low, _stock(llama, INPUTS, **generate))
    fixed = _speculative(llama, INPUTS, options=dict(DRAFTS[0][1], k=4), **generate)[1]
    assert report.acceptance_rate < 0.5  # random weights: the skip3 draft is mostly rejected ...
    assert sum(report.drafted) < sum(fixed.drafted) / 3  # ... so most rounds are plain steps
    assert report.drafted.count(0) > len(report.drafted) / 2
    high, exact = _speculative(exact_draft_llama, INPUTS, "layers", dict(EXACT, k=4, schedule="expected"), **generate)
    assert torch.equal(high, _stock(exact_draft_llama, INPUTS, **generate))
    assert exact.acceptance_rate == 1.0 and exact.drafted[:3] == [4, 4, 4]  # always accepted: always k


@pytest.mark.parametrize("max_new_tokens", [2, 5, 11])
def test_the_expected_schedule_ends_at_max_new_tokens(exact_draft_llama, max_new_tokens):
    generate = dict(max_new_tokens=max_new_tokens, do_sample=False)
    new, report = _speculative(exact_draft_llama, INPUTS, "layers", dict(EXACT, k=4, schedule="expected"), **generate)
    assert torch.equal(new, _stock(exact_draft_llama, INPUTS, **generate)) and report.new_tokens == max_new_tokens


# -- n-gram lookup before the layer draft (lookup=) ------------------------------------------------------------


def test_lookup_candidates_follow_the_latest_earlier_occurrence_of_the_longest_suffix():
    from lvlm_skip.speculative import lookup_candidates

    def look(sequence, ngram=2, count=3, **kwargs):
        return lookup_candidates(torch.tensor(sequence), ngram, count, **kwargs).tolist()

    assert look([3, 4, 5, 6, 9, 4, 5, 7, 8, 4, 5]) == [7, 8, 4]  # (4, 5) last recurred at 5
    assert look([3, 4, 5, 6, 9, 4, 5, 7, 8, 4, 5], count=9) == [7, 8, 4, 5, 7, 8, 4, 5, 7]  # its period, repeated
    assert look([2, 8, 1, 2, 7, 1, 2], ngram=2) == [7, 1, 2]  # the 2-gram (1, 2) wins over the 1-gram (2) ...
    assert look([2, 8, 1, 2, 7, 1, 2], ngram=1) == [7, 1, 2]  # ... which also last recurred at 3
    assert look([2, 8, 1, 2, 7, 1, 3, 2], ngram=2, count=4) == [7, 1, 3, 2]  # no (3, 2) before: the 1-gram (2) at 3
    assert look([9, 9, 9], count=5) == [9, 9, 9, 9, 9]  # a run: period 1, all count at once
    assert look([5, 6, 0, 5, 6, 7, 5, 6], forbidden=frozenset({0})) == [7, 5, 6]  # a placeholder is never proposed
    assert look([5, 6, 7, 0, 5, 6], forbidden=frozenset({0}), count=5) == [7]  # the candidates end before one ...
    assert look([5, 6, 0, 5, 6, 0, 5, 6], forbidden=frozenset({0})) == []  # ... so nothing may follow here
    assert look([5, 6, 7, 2, 9, 5, 6], count=5, end_tokens=frozenset({2})) == [7, 2]  # they end after an EOS
    assert look([1, 2, 3]) == [] and look([4]) == [] and look([1, 2, 1, 2], count=0) == []


REPEATING = torch.tensor([[1, 5, 6, 7, 8, 5, 6, 7, 8, 5, 6]])


@pytest.mark.parametrize("schedule", ["constant", "heuristic", "expected"])
def test_lookup_greedy_equals_stock_on_llama(llama, schedule):
    inputs = {"input_ids": REPEATING, "attention_mask": torch.ones_like(REPEATING)}
    generate = dict(max_new_tokens=24, min_new_tokens=24, do_sample=False)
    new, report = _speculative(llama, inputs, options=dict(DRAFTS[0][1], k=3, lookup=5, schedule=schedule), **generate)
    assert torch.equal(new, _stock(llama, inputs, **generate))
    assert 0 < report.lookup_rounds < report.verifies  # both the lookup and the layer draft drafted
    assert report.draft_forwards == [d - looked for d, looked in zip(report.drafted, report.looked_up)]
    assert all(looked in (0, d) for d, looked in zip(report.drafted, report.looked_up))
    assert max(report.looked_up) <= 5 and report.summary()["lookup_rounds"] == report.lookup_rounds
    off = _speculative(llama, inputs, options=dict(DRAFTS[0][1], k=3, schedule=schedule), **generate)[1]
    assert off.lookup_rounds == 0 and off.looked_up == [0] * off.verifies


def test_lookup_on_llava_never_proposes_an_image_placeholder():
    """The prompt's longest repeats are the image placeholders; a candidate holding one would make LLaVA's forward
    count another image and fail. Here the lookup runs on an image prompt and gives the stock tokens."""
    model, processor = make_llava(8, hidden=64, intermediate=128, seed=3, dtype=torch.float64)
    image = Image.fromarray((np.random.RandomState(0).rand(40, 40, 3) * 255).astype("uint8"))
    inputs = dict(processor(images=image, text=chat_prompt(processor, "describe this image . describe this image ."),
                            return_tensors="pt"))
    inputs["pixel_values"] = inputs["pixel_values"].double()
    generate = dict(max_new_tokens=16, min_new_tokens=16, do_sample=False, suppress_tokens=[model.config.image_token_id])
    new, report = _speculative(model, inputs, options=dict(DRAFTS[0][1], lookup=8, lookup_ngram=1), **generate)
    assert torch.equal(new, _stock(model, inputs, **generate)) and report.lookup_rounds > 0


def _oracle_lookup(monkeypatch, continuation: list[int], wrong_every: int = 0):
    """Replace the n-gram matcher by one that proposes the given continuation of the prompt (every
    ``wrong_every``-th round's first candidate replaced by a wrong token), so that lookup rounds are long and land
    on EOS, max_new_tokens and stopping criteria."""
    import lvlm_skip.speculative as speculative

    rounds = []

    def lookup(sequence, ngram, count, forbidden=frozenset(), end_tokens=frozenset()):
        rounds.append(count)
        done = sequence.shape[0] - PROMPT.shape[1]
        taken = []
        for token in continuation[done: done + count]:
            taken.append(token)
            if token in end_tokens:
                break
        if wrong_every and taken and len(rounds) % wrong_every == 0:
            taken[0] = (taken[0] + 1) % 128
        return torch.tensor(taken, dtype=sequence.dtype)

    monkeypatch.setattr(speculative, "lookup_candidates", lookup)


@pytest.mark.parametrize("max_new_tokens", [2, 3, 7, 13])
def test_lookup_rounds_end_at_max_new_tokens(llama, monkeypatch, max_new_tokens):
    free = _stock(llama, INPUTS, max_new_tokens=16, min_new_tokens=16, do_sample=False)[0].tolist()
    _oracle_lookup(monkeypatch, free, wrong_every=2)
    generate = dict(max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens, do_sample=False)
    new, report = _speculative(llama, INPUTS, options=dict(DRAFTS[0][1], lookup=6), **generate)
    assert new[0].tolist() == free[:max_new_tokens] and report.new_tokens == max_new_tokens
    # the oracle always proposes (a last round with room for the verify's token alone drafts nothing)
    assert report.lookup_rounds == sum(1 for d in report.drafted if d) and report.draft_forwards == [0] * report.verifies
    assert max(report.looked_up) <= 6 and (max_new_tokens < 8 or sum(report.accepted) < sum(report.drafted))


def test_lookup_rounds_end_at_eos_and_stopping_criteria(llama, monkeypatch):
    free = _stock(llama, INPUTS, max_new_tokens=12, min_new_tokens=12, do_sample=False)[0].tolist()
    _oracle_lookup(monkeypatch, free)
    step = next(s for s in (4, 5, 6, 7) if free[s] not in free[:s])
    generate = dict(max_new_tokens=12, do_sample=False, eos_token_id=free[step], pad_token_id=0)
    new, report = _speculative(llama, INPUTS, options=dict(DRAFTS[0][1], lookup=10), **generate)
    assert new[0].tolist() == free[: step + 1] and report.new_tokens == step + 1
    assert report.acceptance_rate == 1.0 and report.verifies == 1  # one round: the candidates end at the EOS
    generate = dict(max_new_tokens=12, do_sample=False, stopping_criteria=StoppingCriteriaList([_StopAfter(free[step])]))
    new, _ = _speculative(llama, INPUTS, options=dict(DRAFTS[0][1], lookup=10), **generate)
    assert new[0].tolist() == free[: step + 1]


def test_the_acceptance_rule_with_a_looked_up_draft_gives_the_target_distribution():
    """A looked-up candidate is a draft of certainty, ``q = 1`` at its token: kept with probability ``p(x)``, else a
    draw from ``p`` without ``x``; the token is distributed as ``p`` (chi-square, 20000 draws)."""
    from scipy.stats import chisquare

    from lvlm_skip.speculative import _point_mass

    torch.manual_seed(0)
    vocab, draws, x = 6, 20000, torch.tensor([[2]])
    p_logits = torch.randn(1, vocab) * 1.5
    counts = np.zeros(vocab)
    q = _point_mass(2, vocab, "cpu")
    for _ in range(draws):
        accepted, token = SpeculativeDecoder._accept(x, [p_logits, p_logits], [q], do_sample=True)
        counts[2 if accepted else int(token)] += 1
    expected = p_logits.softmax(-1)[0].double().numpy()
    assert chisquare(counts, expected / expected.sum() * draws).pvalue > 1e-4


TEMPERATURE = 2.5


def test_sampled_tokens_with_lookup_are_distributed_as_stock_sampling():
    """End to end: every token of a vocabulary of 12 is in the prompt, so after the prefill's token the 1-gram lookup
    always proposes the second token; it has the full model's exact marginal (chi-square, 1000 sequences; at
    temperature 2.5, so that the rule keeps some candidates and rejects others)."""
    from scipy.stats import chisquare

    model = make_llama(6, dtype=torch.float64, initializer_range=0.5, vocab=12, seed=2)
    prompt = torch.tensor([[1, 5, 6, 7, 0, 2, 3, 4, 8, 9, 10, 11]])
    eos = model.generation_config.eos_token_id
    with torch.no_grad():
        first = (model(prompt).logits[0, -1] / TEMPERATURE).index_fill(-1, torch.tensor([eos]), -torch.inf).softmax(-1)
        rows = torch.cat([prompt.expand(12, -1), torch.arange(12)[:, None]], dim=1)
        second = (model(rows).logits[:, -1] / TEMPERATURE).index_fill(-1, torch.tensor([eos]), -torch.inf).softmax(-1)
        exact = (first[:, None] * second).sum(0).numpy()
    torch.manual_seed(0)
    counts = np.zeros(12)
    inputs = {"input_ids": prompt, "attention_mask": torch.ones_like(prompt)}
    accepted = drafted = 0
    with lvlm_skip.skipping(model, variant="speculative", draft="layers", layers=[3, 4, 5], k=1, lookup=1,
                            lookup_ngram=1) as run:
        for _ in range(SEQUENCES):
            with torch.no_grad():
                out = model.generate(**inputs, max_new_tokens=3, min_new_tokens=3, do_sample=True, top_k=0,
                                     temperature=TEMPERATURE)
            counts[int(out[0, prompt.shape[1] + 1])] += 1
            assert run.report.looked_up[0] == 1  # the second token was a looked-up draft, judged by the rule
            accepted, drafted = accepted + run.report.accepted[0], drafted + 1
    assert 0.02 < accepted / drafted < 0.98
    assert counts[exact == 0].sum() == 0  # the EOS, which min_new_tokens forbids (a bin left out below)
    keep, rare = exact * SEQUENCES >= 5, (exact > 0) & (exact * SEQUENCES < 5)
    observed, expected = counts[keep], exact[keep]
    if rare.any():  # the rare tokens pooled
        observed, expected = np.append(observed, counts[rare].sum()), np.append(expected, exact[rare].sum())
    expected = expected / expected.sum() * SEQUENCES
    assert chisquare(observed, expected).pvalue > 1e-4


def test_bad_lookup_options_are_one_line_errors(llama):
    for options, match in ((dict(lookup=-1), "`lookup`"), (dict(lookup=4, lookup_ngram=0), "`lookup_ngram`")):
        with pytest.raises(ValueError, match=match):
            lvlm_skip.wrap(llama, variant="speculative", draft="skip3", critical_layer=2, **options)
