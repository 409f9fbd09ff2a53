"""A wrapped model can be compiled: ``torch.compile`` under ``torch.inference_mode`` gives the eager tokens.

Two ways of compiling: ``how="forward"`` replaces the (wrapped) ``model.forward`` by
``torch.compile(model.forward)``; ``how="module"`` compiles the module in place (``model.compile()``),
so that every ``model(...)`` call inside ``generate`` goes through the compiled ``__call__``.
(``torch.compile(model).generate`` would prove nothing: the ``OptimizedModule`` hands ``generate`` to
the original module, which then runs eagerly.)

Backends: the default one, inductor (it generates and builds C++ kernels, so it needs a C++
compiler; the test is skipped, saying so, where none is found), for the first compilation of the
static and of the online skip; dynamo's ``"eager"`` backend (the captured graphs, run without code
generation) for the other cases, to keep the file to about a minute on a CPU. Every case checks that
dynamo did compile frames, except a peer compiled as a module: the peers route ``forward`` through a
``torch.compiler.disable``'d wrapper (:class:`lvlm_skip.hooks.ForwardRouting`), so a module-level
compile leaves the peer's forward eager, which the test states.

The model is the peers' tiny Llama (weights drawn with ``initializer_range=0.3``), on which every
option here changes the stock tokens, so equal tokens mean the intervention ran inside the compiled
model too.
"""

import pytest
import torch
from torch._dynamo.utils import counters

import lvlm_skip

from tiny_models import LOOSE, make_llama

IDS = torch.tensor([[1, 5, 6, 7, 8]])
GREEDY = dict(max_new_tokens=5, do_sample=False)

#: (case id, wrap options, backend of the forward compile)
OPTIONS = [
    ("layers", dict(variant="layers", layers=[3, 4]), "inductor"),
    ("skip2-online", dict(variant="skip2", mode="online", detection=LOOSE), "eager"),
    ("skip3-online", dict(variant="skip3", mode="online", keep_last=2, detection=LOOSE), "inductor"),
    ("dola", dict(variant="dola"), "eager"),
]


def _missing_cpp_compiler() -> str | None:
    """Why inductor cannot build CPU kernels here, or None when a C++ compiler is found."""
    from torch._inductor import cpp_builder, exc

    try:
        cpp_builder.get_cpp_compiler()
    except exc.InvalidCxxCompiler as error:
        return f"inductor needs a C++ compiler on the CPU and none was found ({str(error).splitlines()[0]})"
    return None


@pytest.fixture(scope="module")
def llama():
    model = make_llama(8, initializer_range=0.3)
    model.stock_tokens = model.generate(IDS, **GREEDY)
    return model


@pytest.mark.parametrize("how", ["forward", "module"])
@pytest.mark.parametrize("case,options,backend", OPTIONS, ids=[case for case, _, _ in OPTIONS])
def test_compiled_wrapped_model_decodes_like_eager(llama, how, case, options, backend):
    """The compiled wrapped model gives the eager wrapped tokens, which differ from the stock ones, and
    reports all 5 steps; dynamo compiled frames (none for a peer compiled as a module, see above)."""
    backend = backend if how == "forward" else "eager"
    if backend == "inductor" and (reason := _missing_cpp_compiler()):
        pytest.skip(reason)
    with lvlm_skip.skipping(llama, **options):
        eager = llama.generate(IDS, **GREEDY)
    assert not torch.equal(eager, llama.stock_tokens), "the option does not act on this model: equal tokens would prove little"
    torch._dynamo.reset()
    counters.clear()
    try:
        with lvlm_skip.skipping(llama, **options) as run, torch.inference_mode():
            if how == "forward":
                llama.forward = torch.compile(llama.forward, backend=backend)
            else:
                llama.compile(backend=backend)
            compiled = llama.generate(IDS, **GREEDY)
    finally:
        llama.__dict__.pop("forward", None)
        llama._compiled_call_impl = None
    frames = counters["frames"]["ok"]
    assert torch.equal(compiled, eager)
    assert run.report.num_steps == 5
    if how == "module" and case == "dola":
        assert frames == 0, "a module compile now traces the peer's forward: update the docstring"
    else:
        assert frames > 0, "nothing was compiled"
    assert torch.equal(llama.generate(IDS, **GREEDY), llama.stock_tokens)  # unwrapped and uncompiled again
