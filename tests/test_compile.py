"""A wrapped model can be compiled: torch.compile under torch.inference_mode gives the eager tokens."""

import pytest
import torch

import lvlm_skip

from tiny_models import LOOSE, make_llama


@pytest.fixture()
def llama():
    return make_llama(8)


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
