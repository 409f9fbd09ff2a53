"""Issue 23: what a new user meets — refusals at wrap, the full variant list, honest speed notes."""

import types

import pytest

import lvlm_skip
from lvlm_skip.wrapping import VARIANTS
from tests.tiny_models import _llava


def test_wrap_unknown_variant_lists_all_nine():
    model = _llava()
    with pytest.raises(ValueError) as err:
        lvlm_skip.wrap(model, variant="skipX")
    for name in VARIANTS:
        assert name in str(err.value)
    for peer in ("dola", "deco", "vcd"):
        assert peer in str(err.value)
    assert getattr(model, "_lvlm_skip_state", None) is None


def test_wrap_refuses_linear_attention_before_generation():
    model = _llava()
    model.config.text_config.layer_types = ["linear_attention", "full_attention"]
    with pytest.raises(lvlm_skip.UnsupportedModelError, match="linear-attention"):
        lvlm_skip.wrap(model, variant="skip1", critical_layer=1)
    assert getattr(model, "_lvlm_skip_state", None) is None
