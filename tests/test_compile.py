"""A wrapped model can be compiled: torch.compile under torch.inference_mode gives the eager tokens."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

import lvlm_skip

LOOSE = dict(min_shallow_layers=1, rel_low=0.9, patience=1, spike_factor=1.5, mutation_rule="spike_or_top1")


@pytest.fixture()
def llama():
    config = LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=8, num_attention_heads=4,
                         num_key_value_heads=2, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(0)
    return LlamaForCausalLM(config).eval()


@pytest.mark.parametrize("how", ["forward", "module"])
@pytest.mark.parametrize("options", [dict(variant="layers", layers=[3, 4]), dict(variant="skip2", mode="online", detection=LOOSE),
                                     dict(variant="skip3", mode="online", keep_last=2, detection=LOOSE), dict(variant="dola")])
def test_compiled_wrapped_model_decodes_like_eager(llama, how, options):
    ids = torch.tensor([[1, 5, 6, 7, 8]])
    with lvlm_skip.skipping(llama, **options):
        eager = llama.generate(ids, max_new_tokens=5, do_sample=False)
    torch._dynamo.reset()
    with lvlm_skip.skipping(llama, **options) as run, torch.inference_mode():
        if how == "forward":
            llama.forward = torch.compile(llama.forward, backend="eager")
            compiled = llama.generate(ids, max_new_tokens=5, do_sample=False)
        else:
            compiled = torch.compile(llama, backend="eager").generate(ids, max_new_tokens=5, do_sample=False)
    llama.__dict__.pop("forward", None)
    assert torch.equal(compiled, eager)
    assert run.report.num_steps == 5
