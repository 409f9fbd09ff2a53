"""MutationExitLogitsProcessor inside a stock generate: equal to online exit with the same defaults, and
composing with the processors transformers runs before it and the warpers after it."""

import pytest
import torch
from transformers import LogitsProcessorList

import lvlm_skip
from lvlm_skip.detection import DetectionConfig
from lvlm_skip.processors import MutationExitLogitsProcessor

from batches import left_padded_batch
from tiny_models import LOOSE, make_llama

NUM_LAYERS = 8
GREEDY = dict(max_new_tokens=8, do_sample=False, min_new_tokens=8)


@pytest.fixture(scope="module")
def llama():
    return make_llama(NUM_LAYERS, dtype=torch.float64)


@pytest.mark.parametrize("candidates", [256, 0])
def test_processor_equals_online_exit_with_the_same_defaults(llama, candidates):
    batch = left_padded_batch()
    with lvlm_skip.skipping(llama, variant="exit", mode="online", detection=LOOSE, candidates=candidates) as run:
        wrapped = llama.generate(**batch, **GREEDY)
    assert (run.report.exit_layer < NUM_LAYERS).any(), "online exit never acted: the comparison would prove nothing"
    with MutationExitLogitsProcessor(llama, DetectionConfig(**LOOSE), candidates=candidates) as exit_on_mutation:
        out = llama.generate(**batch, **GREEDY, logits_processor=LogitsProcessorList([exit_on_mutation]))
    assert torch.equal(out, wrapped)
    assert (torch.stack(exit_on_mutation.exit_layers).numpy() == run.report.exit_layer).all()
    assert all(not layer._forward_pre_hooks for layer in llama.model.layers[:1])  # hooks removed on exit


def _exits(llama, **kwargs):
    batch = left_padded_batch()
    with MutationExitLogitsProcessor(llama, DetectionConfig(**LOOSE)) as processor:
        out = llama.generate(**batch, logits_processor=LogitsProcessorList([processor]), **kwargs)
    return out[:, batch["input_ids"].shape[1]:], torch.stack(processor.exit_layers)


def test_masks_of_earlier_processors_survive_the_exit(llama):
    plain, exits = _exits(llama, **GREEDY)
    assert (exits < NUM_LAYERS).any()
    banned = sorted(set(plain.flatten().tolist()) - {2})[:2]
    # suppress_tokens and bad_words_ids run before the processor: the exit must not bring them back
    suppressed, exits = _exits(llama, **GREEDY, suppress_tokens=banned)
    assert (exits < NUM_LAYERS).any() and not set(banned) & set(suppressed.flatten().tolist())
    no_bad, _ = _exits(llama, **GREEDY, bad_words_ids=[[t] for t in banned])
    assert not set(banned) & set(no_bad.flatten().tolist())
    # min_new_tokens masks EOS until then
    short, _ = _exits(llama, max_new_tokens=6, min_new_tokens=6, do_sample=False)
    assert 2 not in short.flatten().tolist()


def test_the_exit_is_a_delta_on_the_incoming_scores(llama):
    """On hand-fed scores: rows that exit get scores + (exit logits - final logits); -inf stays -inf."""
    batch = left_padded_batch()
    processor = MutationExitLogitsProcessor(llama, DetectionConfig(**LOOSE))
    try:
        with torch.no_grad():
            final = llama(**batch).logits[:, -1]
        penalised = final * 0.5
        penalised[:, 7] = -float("inf")
        out = processor(batch["input_ids"], penalised)
        exit_layer = processor.exit_layers[-1]
    finally:
        processor.remove()
    assert not torch.equal(out, penalised) or (exit_layer == NUM_LAYERS).all()
    for row, layer in enumerate(exit_layer.tolist()):
        if layer == NUM_LAYERS:
            assert torch.equal(out[row], penalised[row])
        else:
            assert torch.isinf(out[row, 7]) and torch.isfinite(out[row, :7]).all()
    # scores are not modified in place
    assert torch.isinf(penalised[:, 7]).all() and penalised.dtype == out.dtype


def test_repetition_penalty_and_sampling_warpers_run(llama):
    torch.manual_seed(0)
    sampled, exits = _exits(llama, max_new_tokens=8, min_new_tokens=8, do_sample=True, temperature=0.7, top_k=5,
                            repetition_penalty=1.3)
    assert sampled.shape == (3, 8) and (exits < NUM_LAYERS).any()
    torch.manual_seed(0)
    again, _ = _exits(llama, max_new_tokens=8, min_new_tokens=8, do_sample=True, temperature=0.7, top_k=5,
                      repetition_penalty=1.3)
    assert torch.equal(sampled, again)


def test_bad_arguments(llama):
    with pytest.raises(ValueError, match="candidates"):
        MutationExitLogitsProcessor(llama, candidates=-1)
    with pytest.raises(ValueError, match="out of range"):
        MutationExitLogitsProcessor(llama, window_start=NUM_LAYERS + 1)
