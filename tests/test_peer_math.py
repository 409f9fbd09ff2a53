"""DoLa, DeCo and VCD step math: hand-computed examples, edge cases, and re-derivations that follow
the released codes' recipes step by step (transformers 4.46 ``_dola_select_contrast``, zjunlp/Deco
``deco_beam_search``, DAMO-NLP-SG/VCD ``vcd_sample.py``/``vcd_add_noise.py``)."""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F

from lvlm_skip.config import (
    DECO_ALPHA, DECO_TOP_K, DECO_TOP_P, DOLA_RELATIVE_TOP, DOLA_REPETITION_PENALTY, VCD_ALPHA, VCD_BETA, VCD_NOISE_STEP,
)
from lvlm_skip.peers.deco import deco_candidates, deco_correct, deco_default_window, deco_select_anchor
from lvlm_skip.peers.dola import (
    dola_candidate_layers, dola_contrast, dola_divergence, dola_select_premature, relative_top_filter,
)
from lvlm_skip.peers.vcd import diffusion_alpha_bar, diffusion_noise, vcd_contrast
from lvlm_skip.divergence import js_divergence

INF = math.inf
LN2, LN4, LN7 = math.log(2), math.log(4), math.log(7)


def _logits(*probs: float) -> torch.Tensor:
    """Logits whose softmax is ``probs`` (they sum to 1)."""
    return torch.tensor(probs, dtype=torch.float64).log().float()


def _random(*shape: int, seed: int, scale: float = 3.0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale


def _close(actual: torch.Tensor, expected: list[float], atol: float = 1e-6) -> None:
    torch.testing.assert_close(actual, torch.tensor(expected, dtype=actual.dtype), atol=atol, rtol=0)


def test_defaults_match_the_released_codes():
    assert DOLA_RELATIVE_TOP == 0.1 and DOLA_REPETITION_PENALTY == 1.2
    assert (DECO_ALPHA, DECO_TOP_P, DECO_TOP_K) == (0.6, 0.9, 20)
    assert (VCD_ALPHA, VCD_BETA, VCD_NOISE_STEP) == (1.0, 0.1, 500)


# ------------------------------------------------------------------------ DoLa: candidate layers


def test_dola_buckets_llava_7b():
    """L = 32 <= 40: low = range(0, 16, 2), high = range(16, 32, 2)."""
    assert dola_candidate_layers(32, "low") == [0, 2, 4, 6, 8, 10, 12, 14]
    assert dola_candidate_layers(32, "high") == [16, 18, 20, 22, 24, 26, 28, 30]
    # tied embeddings: start at 2 instead of the (identity) embedding readout
    assert dola_candidate_layers(32, "low", tie_word_embeddings=True) == [2, 4, 6, 8, 10, 12, 14]
    assert dola_candidate_layers(32, "high", tie_word_embeddings=True) == [16, 18, 20, 22, 24, 26, 28, 30]


def test_dola_buckets_llava_13b():
    """L = 40, still the <= 40 rule: low = range(0, 20, 2), high = range(20, 40, 2)."""
    assert dola_candidate_layers(40, "low") == [0, 2, 4, 6, 8, 10, 12, 14, 16, 18]
    assert dola_candidate_layers(40, "high") == [20, 22, 24, 26, 28, 30, 32, 34, 36, 38]
    assert dola_candidate_layers(40, "low", tie_word_embeddings=True) == [2, 4, 6, 8, 10, 12, 14, 16, 18]


def test_dola_buckets_deep_models():
    """L > 40: low = range(s, 20, 2), high = range(L - 20, L, 2)."""
    assert dola_candidate_layers(60, "low") == [0, 2, 4, 6, 8, 10, 12, 14, 16, 18]
    assert dola_candidate_layers(60, "low", tie_word_embeddings=True) == [2, 4, 6, 8, 10, 12, 14, 16, 18]
    assert dola_candidate_layers(60, "high") == [40, 42, 44, 46, 48, 50, 52, 54, 56, 58]
    # L = 41: high starts at 21 (L - 20), not at L // 2 = 20
    assert dola_candidate_layers(41, "high") == list(range(21, 41, 2))
    assert dola_candidate_layers(41, "low") == list(range(0, 20, 2))


def test_dola_buckets_shallow_models():
    assert dola_candidate_layers(1, "low") == [0] and dola_candidate_layers(1, "high") == [0]
    assert dola_candidate_layers(1, "low", tie_word_embeddings=True) == [0]
    assert dola_candidate_layers(2, "low") == [0] and dola_candidate_layers(2, "high") == [1]
    assert dola_candidate_layers(2, "low", tie_word_embeddings=True) == [1]  # start == L // 2
    assert dola_candidate_layers(4, "low", tie_word_embeddings=True) == [2]  # start == L // 2
    with pytest.raises(ValueError, match="leaves no candidate"):  # range(2, 1, 2) is empty
        dola_candidate_layers(3, "low", tie_word_embeddings=True)


def test_dola_explicit_layers_keep_those_below_the_final_layer():
    assert dola_candidate_layers(32, [0, 5, 31, 32, 40]) == [0, 5, 31]
    assert dola_candidate_layers(32, (10, 4)) == [10, 4]  # order kept
    with pytest.raises(ValueError, match=re.escape("`layers` (=[32, 40]) leaves no candidate")):
        dola_candidate_layers(32, [32, 40])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_layers": 0, "layers": "low"}, "`num_layers` (=0) has to be an integer >= 1"),
        ({"num_layers": 32.0, "layers": "low"}, "`num_layers` (=32.0) has to be an integer >= 1"),
        ({"num_layers": 32, "layers": "mid"}, "`layers` (='mid') has to be 'low', 'high' or a list of layer indices"),
        ({"num_layers": 32, "layers": [-1, 2]}, "`layers` (=[-1, 2]) has to hold layer indices >= 0"),
        ({"num_layers": 32, "layers": [1.5]}, "`layers` (=[1.5]) has to be 'low', 'high' or a list"),
    ],
)
def test_dola_candidate_layers_validation(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        dola_candidate_layers(**kwargs)


# -------------------------------------------------------------------------- DoLa: hand examples

# mature p = (1/2, 1/4, 1/8, 1/8); candidate 0: uniform; candidate 1: q1 = (1/8, 1/8, 1/4, 1/2)
MATURE = _logits(0.5, 0.25, 0.125, 0.125)
PREMATURE = torch.stack([_logits(0.25, 0.25, 0.25, 0.25), _logits(0.125, 0.125, 0.25, 0.5)])


def test_dola_divergence_hand_computed():
    # candidate 0: m = (3/8, 1/4, 3/16, 3/16)
    #   sum m ln(m/p)  = 3/8 ln(3/4) + 2 * 3/16 ln(3/2) = -0.10788078 + 0.15204942 = 0.04416864
    #   sum m ln(m/q0) = 3/8 ln(3/2) + 2 * 3/16 ln(3/4) = 0.04416864
    #   D = 1/2 * (0.04416864 + 0.04416864) / 4 = 0.01104216
    # candidate 1: m = (5/16, 3/16, 3/16, 5/16), m/p = (5/8, 3/4, 3/2, 5/2)
    #   sum m ln(m/p) = 5/16 ln(5/8) + 3/16 ln(3/4) + 3/16 ln(3/2) + 5/16 ln(5/2)
    #                 = -0.14687613 - 0.05394039 + 0.07602471 + 0.28634085 = 0.16154904
    #   m/q1 is m/p reversed, the same sum; D = 1/2 * 2 * 0.16154904 / 4 = 0.04038726
    divergence = dola_divergence(MATURE[None], PREMATURE[:, None])
    assert divergence.shape == (2, 1) and divergence.dtype == torch.float32
    _close(divergence[:, 0], [0.01104216, 0.04038726], atol=1e-7)
    assert dola_select_premature(MATURE[None], PREMATURE[:, None]).tolist() == [1]


def test_dola_divergence_is_not_the_jsd():
    """4.x's KL(m || p) order: for candidate 0 the JSD is 0.04247476, not 4 * 0.01104216."""
    # JSD: p/m = (4/3, 1, 2/3, 2/3): 1/2 ln(4/3) + 2 * 1/8 ln(2/3) = 0.14384104 - 0.10136628 = 0.04247476
    #      q0/m = (2/3, 1, 4/3, 4/3): 1/4 ln(2/3) + 2 * 1/4 ln(4/3) = 0.04247476; JSD = 0.04247476
    jsd = js_divergence(torch.log_softmax(MATURE, -1), torch.log_softmax(PREMATURE[0], -1))
    assert jsd.item() == pytest.approx(0.04247476, abs=1e-7)
    assert 4 * dola_divergence(MATURE[None], PREMATURE[:1, None]).item() == pytest.approx(0.04416864, abs=1e-7)


def test_dola_divergence_can_rank_unlike_the_jsd():
    # p = (0.5, 0.3, 0.2); candidate a = (0.1, 0.1, 0.8), candidate b = (0.97, 0.01, 0.02)
    # a: m = (0.3, 0.2, 0.5)
    #    sum m ln(m/p) = 0.3 ln(0.6) + 0.2 ln(2/3) + 0.5 ln(2.5) = -0.15324769 - 0.08109302 + 0.45814537 = 0.22380466
    #    sum m ln(m/a) = 0.3 ln(3) + 0.2 ln(2) + 0.5 ln(0.625) = 0.32958369 + 0.13862944 - 0.23500181 = 0.23321131
    #    D = (0.22380466 + 0.23321131) / 6 = 0.07616933
    # b: m = (0.735, 0.155, 0.11)
    #    sum m ln(m/p) = 0.735 ln(1.47) + 0.155 ln(0.155/0.3) + 0.11 ln(0.55) = 0.28316786 - 0.10235539 - 0.06576207
    #                  = 0.11505040
    #    sum m ln(m/b) = 0.735 ln(0.735/0.97) + 0.155 ln(15.5) + 0.11 ln(5.5) = -0.20390780 + 0.42483020 + 0.18752229
    #                  = 0.40844469
    #    D = (0.11505040 + 0.40844469) / 6 = 0.08724918  -> 4.x picks b
    # JSD: a 1/2 (0.19379420 + 0.19682696) = 0.19531058 > b 1/2 (0.12504341 + 0.20759944) = 0.16632143 -> a
    mature = _logits(0.5, 0.3, 0.2)
    candidates = torch.stack([_logits(0.1, 0.1, 0.8), _logits(0.97, 0.01, 0.02)])
    _close(dola_divergence(mature[None], candidates[:, None])[:, 0], [0.07616933, 0.08724918], atol=1e-7)
    assert dola_select_premature(mature[None], candidates[:, None]).tolist() == [1]
    jsd = js_divergence(torch.log_softmax(mature, -1).expand(2, -1), torch.log_softmax(candidates, -1))
    _close(jsd, [0.19531058, 0.16632143], atol=1e-6)


def test_dola_contrast_hand_computed():
    # candidate 1 is chosen; relative_top 0.1: threshold 1/2 * 0.1 = 0.05 < 1/8, every token kept
    # log p - log q1 = (ln(4), ln(2), ln(1/2), ln(1/4))
    logits, index = dola_contrast(MATURE[None], PREMATURE[:, None])
    assert index.tolist() == [1] and logits.dtype == torch.float32
    _close(logits[0], [LN4, LN2, -LN2, -LN4])
    # relative_top 0.3: threshold 0.15 drops the two 1/8 tokens
    logits, _ = dola_contrast(MATURE[None], PREMATURE[:, None], relative_top=0.3)
    _close(logits[0], [LN4, LN2, -INF, -INF])


def test_dola_contrast_all_filtered_but_one():
    # relative_top 0.6: threshold 0.3 keeps only the 1/2 token
    logits, _ = dola_contrast(MATURE[None], PREMATURE[:, None], relative_top=0.6)
    _close(logits[0], [LN4, -INF, -INF, -INF])
    logits, _ = dola_contrast(MATURE[None], PREMATURE[:, None], relative_top=1.0)
    _close(logits[0], [LN4, -INF, -INF, -INF])


def test_dola_relative_top_zero_keeps_everything():
    log_p, log_q = relative_top_filter(_logits(0.97, 0.01, 0.01, 0.01), PREMATURE[1], relative_top=0.0)
    assert torch.isfinite(log_p).all() and torch.isfinite(log_q).all()
    _close(log_p - log_q, [math.log(0.97 / 0.125), math.log(0.01 / 0.125), math.log(0.01 / 0.25), math.log(0.01 / 0.5)])


def test_relative_top_filter_values_and_min_tokens_to_keep():
    # filtered tokens: -inf in the scores, -1e-3 in the baseline (4.x's base_filter_value)
    log_p, log_q = relative_top_filter(MATURE, PREMATURE[1], relative_top=0.3)
    _close(log_p, [-LN2, -LN4, -INF, -INF])
    _close(log_q, [math.log(0.125), math.log(0.125), -1e-3, -1e-3])
    # relative_top 1 keeps the max only, unless min_tokens_to_keep asks for more
    log_p, _ = relative_top_filter(MATURE, PREMATURE[1], relative_top=1.0, min_tokens_to_keep=2)
    _close(log_p, [-LN2, -LN4, -INF, -INF])
    # the 3rd largest is a tie (1/8, 1/8): both are kept
    log_p, _ = relative_top_filter(MATURE, PREMATURE[1], relative_top=1.0, min_tokens_to_keep=3)
    assert torch.isfinite(log_p).all()


def test_dola_ties_go_to_the_first_candidate():
    twice = torch.stack([PREMATURE[1], PREMATURE[1], PREMATURE[0]])[:, None]
    assert dola_select_premature(MATURE[None], twice).tolist() == [0]


def test_dola_single_candidate_is_static_dola():
    logits, index = dola_contrast(MATURE[None], PREMATURE[:1, None])
    assert index.tolist() == [0]
    _close(logits[0], [LN2, 0.0, -LN2, -LN2])  # log p - log(1/4)


def test_dola_per_row_and_batch_mean_selection():
    # row B: p = (0.7, 0.1, 0.1, 0.1); candidate 0 = (0.1, 0.1, 0.1, 0.7), candidate 1 = p itself
    #   candidate 0: m = (0.4, 0.1, 0.1, 0.4), sum m ln(m/p) = 0.4 ln(4/7) + 0.4 ln(4) = 0.33067143 (both
    #   terms), D = 0.33067143 / 4 = 0.08266786; candidate 1: D = 0
    # per row: A -> 1, B -> 0; batch mean: c0 (0.01104216 + 0.08266786) / 2 = 0.04685501
    #   > c1 (0.04038726 + 0) / 2 = 0.02019363 -> 0 for both rows (transformers 4.x)
    mature = torch.stack([MATURE, _logits(0.7, 0.1, 0.1, 0.1)])
    premature = torch.stack(
        [torch.stack([PREMATURE[0], _logits(0.1, 0.1, 0.1, 0.7)]), torch.stack([PREMATURE[1], _logits(0.7, 0.1, 0.1, 0.1)])]
    )
    _close(dola_divergence(mature, premature), [[0.01104216, 0.08266786], [0.04038726, 0.0]], atol=1e-7)
    assert dola_select_premature(mature, premature).tolist() == [1, 0]
    assert dola_select_premature(mature, premature, batch_mean=True).tolist() == [0, 0]
    logits, index = dola_contrast(mature, premature)
    assert index.tolist() == [1, 0]
    # row B against candidate 0: threshold 0.07 keeps all; (ln 7, 0, 0, -ln 7)
    _close(logits, [[LN4, LN2, -LN2, -LN4], [LN7, 0.0, 0.0, -LN7]], atol=1e-5)


# --------------------------------------------------------------- DoLa: the 4.x recipe, re-derived


def _dola_4x_recipe(final_logits, stacked, relative_top=0.1):
    """transformers 4.46's steps, written out with torch.nn.functional (batch size 1)."""
    softmax_mature = F.softmax(final_logits, dim=-1)
    softmax_premature = F.softmax(stacked, dim=-1)
    mixture = 0.5 * (softmax_mature[None] + softmax_premature)
    kl1 = F.kl_div(F.log_softmax(final_logits, dim=-1)[None], mixture, reduction="none").mean(-1)
    kl2 = F.kl_div(F.log_softmax(stacked, dim=-1), mixture, reduction="none").mean(-1)
    chosen = int((0.5 * (kl1 + kl2)).mean(-1).argmax())
    scores = final_logits.log_softmax(-1)
    base = stacked[chosen].log_softmax(-1)
    threshold = torch.minimum(torch.sort(scores, descending=True).values[..., 0], scores.max(-1).values + math.log(relative_top))
    drop = scores < threshold[..., None]
    return scores.masked_fill(drop, -INF) - base.masked_fill(drop, -1e-3), chosen


@pytest.mark.parametrize("seed", range(5))
def test_dola_matches_the_4x_recipe(seed):
    final, stacked = _random(1, 50, seed=seed), _random(4, 1, 50, seed=100 + seed)
    expected, chosen = _dola_4x_recipe(final, stacked)
    divergence = dola_divergence(final, stacked)
    mixture = 0.5 * (F.softmax(final, -1)[None] + F.softmax(stacked, -1))
    reference = 0.5 * (
        F.kl_div(F.log_softmax(final, -1)[None], mixture, reduction="none").mean(-1)
        + F.kl_div(F.log_softmax(stacked, -1), mixture, reduction="none").mean(-1)
    )
    torch.testing.assert_close(divergence, reference, rtol=1e-5, atol=1e-9)
    logits, index = dola_contrast(final, stacked)
    assert index.tolist() == [chosen]
    torch.testing.assert_close(logits, expected)


# ------------------------------------------------------------------------------ DeCo: candidates

# final p = (1/2, 1/4, 1/8, 3/32, 1/32): cumulative (0.5, 0.75, 0.875, 0.96875, 1)
FINAL = _logits(0.5, 0.25, 0.125, 0.09375, 0.03125)
# window: a = uniform, b = (0.1, 0.6, 0.1, 0.1, 0.1), c = (0.05, 0.05, 0.05, 0.05, 0.8)
WINDOW = torch.stack(
    [_logits(0.2, 0.2, 0.2, 0.2, 0.2), _logits(0.1, 0.6, 0.1, 0.1, 0.1), _logits(0.05, 0.05, 0.05, 0.05, 0.8)]
)


@pytest.mark.parametrize(
    ("top_p", "top_k", "expected"),
    [
        (0.9, 20, [0, 1, 2, 3]),  # 0.875 < 0.9 <= 0.96875: the 4th token crosses and is kept
        (0.8, 20, [0, 1, 2]),  # 0.75 < 0.8 <= 0.875
        (0.7, 20, [0, 1]),  # 0.5 < 0.7 <= 0.75
        (0.0, 20, [0]),  # always at least the top token
        (1.0, 20, [0, 1, 2, 3, 4]),  # top_k 20 clamped to the 5-token vocabulary
        (0.9, 2, [0, 1]),  # top-k cuts first
        (0.9, 1, [0]),
    ],
)
def test_deco_candidates(top_p, top_k, expected):
    mask = deco_candidates(FINAL[None], top_p, top_k)
    assert mask.dtype == torch.bool and torch.nonzero(mask[0]).flatten().tolist() == expected


# ------------------------------------------------------------------------- DeCo: hand examples


def test_deco_anchor_and_weight_hand_computed():
    # candidates {0, 1, 2} (top_p 0.8): best candidate probability per layer a 0.2, b 0.6, c 0.05;
    # layer c's 0.8 is on token 4, not a candidate -> anchor b (1), w = 0.6
    anchor, weight = deco_select_anchor(WINDOW[:, None], deco_candidates(FINAL[None], 0.8))
    assert anchor.tolist() == [1]
    _close(weight, [0.6])
    # with every token a candidate (top_p 1), layer c wins with 0.8
    anchor, weight = deco_select_anchor(WINDOW[:, None], deco_candidates(FINAL[None], 1.0))
    assert anchor.tolist() == [2]
    _close(weight, [0.8])


def test_deco_correct_hand_computed():
    # alpha 0.6, w 0.6: z = ln p + 0.36 ln q_b on {0, 1, 2}
    #   0: ln(1/2) + 0.36 ln(0.1) = -0.69314718 - 0.82893063 = -1.52207781
    #   1: ln(1/4) + 0.36 ln(0.6) = -1.38629436 - 0.18389722 = -1.57019158
    #   2: ln(1/8) + 0.36 ln(0.1) = -2.07944154 - 0.82893063 = -2.90837217
    logits, anchor = deco_correct(FINAL[None], WINDOW[:, None], top_p=0.8)
    assert anchor.tolist() == [1] and logits.dtype == torch.float32
    _close(logits[0], [-1.52207781, -1.57019158, -2.90837217, -INF, -INF])
    # alpha 1, w 0.6: the anchor's preference overturns the final layer's
    #   0: -0.69314718 + 0.6 ln(0.1) = -0.69314718 - 1.38155106 = -2.07469824
    #   1: -1.38629436 + 0.6 ln(0.6) = -1.38629436 - 0.30649537 = -1.69278973
    #   2: -2.07944154 - 1.38155106 = -3.46099260
    logits, _ = deco_correct(FINAL[None], WINDOW[:, None], alpha=1.0, top_p=0.8)
    _close(logits[0], [-2.07469824, -1.69278973, -3.46099260, -INF, -INF])
    assert logits.argmax().item() == 1 and FINAL.argmax().item() == 0


def test_deco_alpha_zero_and_window_of_one():
    logits, _ = deco_correct(FINAL[None], WINDOW[:, None], alpha=0.0, top_p=0.8)
    _close(logits[0], [-LN2, -LN4, -math.log(8), -INF, -INF])
    # one layer (uniform): anchor 0, w = 0.2; z = ln p + 0.6 * 0.2 * ln(0.2) = ln p - 0.19313254
    logits, anchor = deco_correct(FINAL[None], WINDOW[:1, None], top_p=0.8)
    assert anchor.tolist() == [0]
    _close(logits[0], [-LN2 - 0.19313254, -LN4 - 0.19313254, -math.log(8) - 0.19313254, -INF, -INF])


def test_deco_ties_go_to_the_earliest_layer():
    twice = torch.stack([WINDOW[0], WINDOW[1], WINDOW[1]])[:, None]
    _, anchor = deco_correct(FINAL[None], twice, top_p=0.8)
    assert anchor.tolist() == [1]


def test_deco_anchor_logit_shift_changes_no_probability():
    """Raw logits are added: a constant on the anchor's logits shifts every candidate alike."""
    shifted = WINDOW.clone()
    shifted[1] += 7.0
    base, _ = deco_correct(FINAL[None], WINDOW[:, None], top_p=0.8)
    moved, _ = deco_correct(FINAL[None], shifted[:, None], top_p=0.8)
    _close(moved[0, :3] - base[0, :3], [0.36 * 7.0] * 3, atol=1e-5)
    torch.testing.assert_close(moved.softmax(-1), base.softmax(-1))


def test_deco_default_window():
    assert deco_default_window(32) == list(range(20, 29))  # released code: range(20, 29)
    assert deco_default_window(40) == list(range(25, 36))  # 20 * 40 / 32 = 25, 28 * 40 / 32 = 35
    assert deco_default_window(60) == list(range(38, 54))  # 37.5 -> 38, 52.5 -> 53 (half up)
    assert deco_default_window(24) == list(range(15, 22))
    assert deco_default_window(2) == [1]  # 28 * 2 / 32 -> 2 is the final layer: capped at L - 1
    with pytest.raises(ValueError, match=re.escape("`num_layers` (=1) has to be an integer >= 2")):
        deco_default_window(1)


# ----------------------------------------------------------- DeCo: the released recipe, re-derived


def _deco_released_recipe(final_row, window_rows, alpha=0.6, top_p=0.9, top_k=20):
    """zjunlp/Deco ``deco_beam_search``'s per-row steps on one row `(vocab,)`, `(window, vocab)`."""
    probs = F.softmax(final_row, dim=-1)
    top_probs, top_ids = torch.topk(probs, k=top_k)
    cutoff = torch.min(torch.searchsorted(top_probs.cumsum(-1), top_p, right=False) + 1, torch.tensor(top_k))
    ids = top_ids[:cutoff]
    candidate_probs = F.softmax(window_rows, dim=-1)[:, ids]  # (window, candidates)
    flat = torch.argmax(candidate_probs)
    layer = int(flat // candidate_probs.size(1))
    corrected = final_row + alpha * candidate_probs.max().item() * window_rows[layer]
    remove = torch.ones_like(corrected, dtype=torch.bool)
    remove[ids] = False
    return corrected.masked_fill(remove, -INF), layer


@pytest.mark.parametrize("seed", range(5))
def test_deco_matches_the_released_recipe(seed):
    final, window = _random(3, 40, seed=seed), _random(9, 3, 40, seed=200 + seed)
    logits, anchor = deco_correct(final, window)
    for row in range(3):
        expected, layer = _deco_released_recipe(final[row], window[:, row])
        assert anchor[row].item() == layer
        torch.testing.assert_close(logits[row], expected)


# -------------------------------------------------------------------------------- VCD: contrast

CLEAN = torch.tensor([2.0, 1.0, 0.0, -3.0])
NOISED = torch.tensor([1.0, 1.5, 0.0, -1.0])


def test_vcd_hand_computed():
    # alpha 1: 2 z - z' = (3, 0.5, 0, -5); cutoff ln(0.1) + 2 = -0.30258509 drops z = -3 only
    # (p / p_max = e^0, e^-1, e^-2 = 0.135 >= 0.1, e^-5 = 0.0067 < 0.1)
    out = vcd_contrast(CLEAN[None], NOISED[None])
    assert out.dtype == torch.float32
    _close(out[0], [3.0, 0.5, 0.0, -INF])
    # beta 0.5: cutoff 2 - 0.69314718 = 1.30685282 keeps the top token only
    _close(vcd_contrast(CLEAN, NOISED, beta=0.5), [3.0, -INF, -INF, -INF])
    # alpha 0.5 (vcd_sample.py's fallback): 1.5 z - 0.5 z' = (2.5, 0.75, 0, -4.0)
    _close(vcd_contrast(CLEAN, NOISED, alpha=0.5), [2.5, 0.75, 0.0, -INF])


def test_vcd_alpha_zero_is_the_identity():
    _close(vcd_contrast(CLEAN, NOISED, alpha=0.0, beta=0.0), CLEAN.tolist())
    _close(vcd_contrast(CLEAN, NOISED, alpha=0.0), [2.0, 1.0, 0.0, -INF])  # beta still filters


def test_vcd_cutoff_uses_the_clean_distribution_only():
    """Whatever the noised logits, the plausible set is the clean one's."""
    wild = torch.tensor([50.0, -50.0, 80.0, -90.0])
    out = vcd_contrast(CLEAN, wild)
    assert torch.isinf(out).tolist() == [False, False, False, True]
    _close(out, [2 * 2.0 - 50.0, 2 * 1.0 + 50.0, -80.0, -INF])


@pytest.mark.parametrize("masked", [-INF, torch.finfo(torch.float64).min])
def test_vcd_keeps_tokens_the_model_masked_out_at_beta_zero(masked):
    """A model-masked token (Chameleon's image tokens: its dtype's minimum) would contrast to -inf + inf = NaN, which
    argmax picks; it stays -inf, and the others are the plain contrast."""
    clean = torch.tensor([2.0, masked, 0.0], dtype=torch.float64)
    noised = torch.tensor([1.0, masked, 0.5], dtype=torch.float64)
    out = vcd_contrast(clean, noised, alpha=3.0, beta=0.0)
    assert not out.isnan().any()
    _close(out, [4 * 2.0 - 3 * 1.0, -INF, -1.5])
    assert out.argmax() == 0


@pytest.mark.parametrize("seed", range(5))
def test_vcd_matches_the_released_recipe(seed):
    """vcd_sample.py's version-2 cutoff, and its version-1 (probability) form selects the same set."""
    clean, noised = _random(2, 60, seed=seed), _random(2, 60, seed=300 + seed)
    cutoff = torch.log(torch.tensor(0.1)) + clean.max(dim=-1, keepdim=True).values
    expected = ((1 + 1.0) * clean - 1.0 * noised).masked_fill(clean < cutoff, -INF)
    out = vcd_contrast(clean, noised)
    torch.testing.assert_close(out, expected)
    probs = clean.softmax(-1)
    assert torch.equal(torch.isinf(out), probs < 0.1 * probs.max(-1, keepdim=True).values)


# ----------------------------------------------------------------------------- VCD: diffusion


def test_diffusion_alpha_bar():
    # t = 0: beta_0 = sigmoid(-6) * (5e-3 - 1e-5) + 1e-5 = 0.00247262 * 0.00499 + 1e-5 = 2.2338390e-5
    assert diffusion_alpha_bar(0) == pytest.approx(1 - 2.2338390e-5, abs=1e-7)
    # every t against the schedule recomputed in float64, in plain Python
    product, expected = 1.0, []
    for t in range(1000):
        beta = 1 / (1 + math.exp(6 - 12 * t / 999)) * (0.5e-2 - 1e-5) + 1e-5
        product *= 1 - beta
        expected.append(product)
    for t in (0, 1, 250, 500, 750, 999):
        assert diffusion_alpha_bar(t) == pytest.approx(expected[t], rel=1e-5)
    assert diffusion_alpha_bar() == pytest.approx(0.7447985, abs=1e-6)


def test_diffusion_noise_is_their_formula_and_deterministic():
    pixels = _random(2, 3, 4, 4, seed=7, scale=1.0)
    first = diffusion_noise(pixels, generator=torch.Generator().manual_seed(0))
    again = diffusion_noise(pixels, generator=torch.Generator().manual_seed(0))
    assert torch.equal(first, again) and first.shape == pixels.shape and first.dtype == torch.float32
    # x_500 = sqrt(abar) x + sqrt(1 - abar) eps = 0.8630 x + 0.5052 eps
    eps = torch.randn(pixels.shape, generator=torch.Generator().manual_seed(0))
    alpha_bar = torch.tensor(diffusion_alpha_bar(500))
    torch.testing.assert_close(first, alpha_bar.sqrt() * pixels + (1 - alpha_bar).sqrt() * eps)
    assert alpha_bar.sqrt().item() == pytest.approx(0.8630, abs=1e-4)
    assert (1 - alpha_bar).sqrt().item() == pytest.approx(0.5052, abs=1e-4)
    # step 0 barely moves the image
    barely = diffusion_noise(pixels, 0, generator=torch.Generator().manual_seed(0))
    assert (barely - pixels).abs().max() < 0.03


def test_diffusion_noise_keeps_half_precision():
    pixels = _random(3, 8, 8, seed=8, scale=1.0).half()
    out = diffusion_noise(pixels, generator=torch.Generator().manual_seed(1))
    reference = diffusion_noise(pixels.float(), generator=torch.Generator().manual_seed(1))
    assert out.dtype == torch.float16
    assert torch.equal(out, reference.half())


@pytest.mark.parametrize("step", [-1, 1000, 2.5, True])
def test_diffusion_noise_step_validation(step):
    with pytest.raises(ValueError, match=re.escape(f"`noise_step` (={step!r}) has to be an integer in [0, 999]")):
        diffusion_noise(torch.zeros(3), step)


# --------------------------------------------------------------------------- common properties


def _all_steps(final, stack):
    """Every per-row function on `(batch, vocab)` and `(n, batch, vocab)` inputs, with the batch axis
    of each output."""
    dola, dola_index = dola_contrast(final, stack)
    deco, anchor = deco_correct(final, stack, top_k=5)
    vcd = vcd_contrast(final, stack[0])
    return [(dola, 0), (dola_index, 0), (deco, 0), (anchor, 0), (vcd, 0), (dola_divergence(final, stack), 1)]


def test_batched_rows_equal_single_rows():
    final, stack = _random(5, 11, seed=11), _random(3, 5, 11, seed=12)
    batched = _all_steps(final, stack)
    for row in range(5):
        single = _all_steps(final[row : row + 1], stack[:, row : row + 1])
        for (whole, axis), (alone, _) in zip(batched, single):
            torch.testing.assert_close(whole.narrow(axis, row, 1), alone, rtol=0, atol=0)


def test_inputs_are_not_modified():
    final, stack = _random(2, 11, seed=13), _random(3, 2, 11, seed=14)
    pixels = _random(2, 3, 4, 4, seed=15)
    copies = [final.clone(), stack.clone(), pixels.clone()]
    _all_steps(final, stack)
    relative_top_filter(final, stack[0], 0.5)
    deco_select_anchor(stack, deco_candidates(final))
    diffusion_noise(pixels)
    for original, copy in zip([final, stack, pixels], copies):
        assert torch.equal(original, copy)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_computed_in_float32(dtype):
    final, stack = _random(2, 11, seed=16).to(dtype), _random(3, 2, 11, seed=17).to(dtype)
    for (half, _), (full, _) in zip(_all_steps(final, stack), _all_steps(final.float(), stack.float())):
        assert half.dtype == full.dtype and half.dtype in (torch.float32, torch.int64)
        assert torch.equal(half, full)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: vcd_contrast(CLEAN, NOISED, alpha=-1), "`alpha` (=-1) has to be a number >= 0"),
        (lambda: vcd_contrast(CLEAN, NOISED, beta=1.5), "`beta` (=1.5) has to be a number in [0.0, 1.0]"),
        (lambda: vcd_contrast(CLEAN, NOISED[:3]), "`noised_logits` has to have the shape of `logits` (4,), got (3,)"),
        (lambda: deco_correct(FINAL[None], WINDOW[:, None], alpha=-0.5), "`alpha` (=-0.5) has to be a number >= 0"),
        (lambda: deco_correct(FINAL[None], WINDOW[:, None], top_p=1.2), "`top_p` (=1.2) has to be a number in [0.0, 1.0]"),
        (lambda: deco_correct(FINAL[None], WINDOW[:, None], top_k=0), "`top_k` (=0) has to be an integer >= 1"),
        (lambda: deco_correct(FINAL[None], WINDOW), "`layer_logits` has to have shape (window, batch, vocab)"),
        (lambda: deco_correct(FINAL, WINDOW[:, None]), "`final_logits` has to have shape (batch, vocab), got (5,)"),
        (lambda: dola_contrast(MATURE[None], PREMATURE[:, None], relative_top=-0.1), "`relative_top` (=-0.1) has to be a number in [0.0, 1.0]"),
        (lambda: dola_contrast(MATURE[None], PREMATURE[:, None], min_tokens_to_keep=5), "`min_tokens_to_keep` (=5) has to be an integer in [1, 4]"),
        (lambda: dola_select_premature(MATURE[None], PREMATURE), "`premature_logits` has to have shape (candidates, batch, vocab)"),
        (lambda: dola_select_premature(MATURE[None], PREMATURE[:, None, :3]), "with (batch, vocab) = (1, 4), got (2, 1, 3)"),
    ],
)
def test_argument_validation(call, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        call()


def test_integer_logits_are_rejected():
    with pytest.raises(TypeError, match=re.escape("`logits` has to be a floating-point tensor, got torch.int64")):
        vcd_contrast(torch.tensor([1, 2]), torch.tensor([1, 2]))
