"""The peers' published POPE protocols (``lvlm-skip pope --protocol authors``).

The harness asks every variant the same way (``--protocol harness``, the default): the question
plus ``--prompt-suffix``, greedy decoding, the run's ``--max-new-tokens``, and POPE's official
answer reading (:func:`~lvlm_skip.benchmarks.pope.metrics.pope_answer`). That is the fair
comparison. The peers' own POPE scripts differ from it and from each other, so a number in
their papers is not the harness's number. ``--protocol authors`` runs each peer the way its
released script does (every value below is read from that script) and every other variant as
the harness does, since none of them published a POPE script:

* **VCD** (DAMO-NLP-SG/VCD, ``experiments/cd_scripts/llava1.5_pope.bash`` @ 65a8fd7 running
  ``experiments/eval/object_hallucination_vqa_llava.py``): the question plus
  ``" Please answer this question with one word."``; *sampling* at temperature 1, top_p 1, no top-k;
  up to 1024 new tokens; ``cd_alpha`` 1, ``cd_beta`` 0.2 (the bash script's, not the Python default
  0.1), ``noise_step`` 500; seed 55. Answers are read by VCD's ``experiments/eval/eval_pope.py``,
  which is *not* POPE's rule (:func:`vcd_answer`).
* **DeCo** (zjunlp/Deco, ``pope_llava.py`` @ cdc5c74): the question as is (the suffix line is commented
  out); greedy (``temperature`` -1 gives ``do_sample=False``); 5 new tokens; the anchor window
  ``range(20, 29)``, alpha 0.6, top-p 0.9, top-k 20 (our defaults). The script keeps ``"Yes"``
  when ``yes`` is a word of the lower-cased answer and ``"No"`` otherwise (its ``recorder``), and
  its ``eval_tool/eval_pope.py`` then scores those two words (:func:`deco_answer`).

Where a protocol cannot be reproduced exactly: VCD seeds once (``set_seed(55)``) and draws every
question's samples from that one stream, so its answers depend on the questions before; here each
question is seeded from 55 and its own id (:meth:`~lvlm_skip.evaluation.variants.Decoding.item_seed`),
so that an answer is the same on a rerun, in any shard and at any batch size. No stream of another
implementation can be matched draw for draw anyway: compare rates, not single answers.

The protocol of every variant is in the report (``meta.protocols``) and in the run's fingerprint.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ...errors import InputError
from ...evaluation.variants import Decoding, VariantPlan
from .metrics import pope_answer

#: ``--protocol`` choices.
PROTOCOLS = ("harness", "authors")


def vcd_answer(text: str, label: str) -> str:
    """``"yes"`` / ``"no"`` as VCD's ``eval_pope.py`` counts ``text`` against ``label``.

    The script lower-cases and strips the answer, then checks a *substring* that depends on the
    label: with label ``yes`` the answer counts as "yes" when it contains ``"yes"``; with label
    ``no`` it counts as "no" when it contains ``"no"`` (so ``"I don't know"`` and ``"Not sure"`` are
    a correct "no", and the same text is a wrong "no" when the label is yes).
    """
    answer = text.lower().strip()
    if label == "yes":
        return "yes" if "yes" in answer else "no"
    return "no" if "no" in answer else "yes"


def deco_answer(text: str, label: str = "") -> str:
    """``"yes"`` / ``"no"`` as DeCo's ``pope_llava.py`` records ``text``: "yes" when ``yes`` is a word of the
    lower-cased answer (split on every run of non-word characters), else "no" (``label`` is not used)."""
    return "yes" if "yes" in re.split(r"[^\w]+", text.lower()) else "no"


def official_answer(text: str, label: str = "") -> str:
    """POPE's official reading (:func:`~lvlm_skip.benchmarks.pope.metrics.pope_answer`); ``label`` is not used."""
    return pope_answer(text)


#: Reading name -> ``reader(text, label) -> "yes" | "no"``.
READINGS = {"pope": official_answer, "vcd": vcd_answer, "deco": deco_answer}


@dataclass(frozen=True)
class PopeProtocol:
    """How one variant is asked and how its answers are read.

    Attributes:
        name: ``harness`` or the peer whose script this is.
        source: The script it reproduces (repository, commit, file), or ``""`` for the harness.
        prompt_suffix: Appended to every question (``None``: the run's ``--prompt-suffix``).
        decoding: How it decodes (``None``: greedy with the run's ``--max-new-tokens``).
        options: ``lvlm_skip.wrap`` options the script sets (e.g. VCD's ``beta``); ``None``: the script's value
            is the option's default (DeCo's window), which ``--variant-options`` may not change either.
        reading: How an answer becomes yes/no: a key of :data:`READINGS`.
    """

    name: str
    source: str = ""
    prompt_suffix: str | None = None
    decoding: Decoding | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    reading: str = "pope"

    def describe(self, run_suffix: str) -> dict[str, Any]:
        """What the report and the fingerprint record of it."""
        return {"name": self.name, "source": self.source,
                "prompt_suffix": run_suffix if self.prompt_suffix is None else self.prompt_suffix,
                "decoding": self.decoding.fingerprint() if self.decoding else "greedy (the run's)",
                "options": dict(self.options), "reading": self.reading}


HARNESS = PopeProtocol(name="harness")

#: Peer name -> its published POPE protocol (see the module docstring for the sources).
AUTHOR_PROTOCOLS: dict[str, PopeProtocol] = {
    "vcd": PopeProtocol(
        name="vcd", source="DAMO-NLP-SG/VCD@65a8fd7 experiments/cd_scripts/llava1.5_pope.bash",
        prompt_suffix=" Please answer this question with one word.",
        decoding=Decoding(sample=True, temperature=1.0, top_p=1.0, top_k=0, max_new_tokens=1024, seed=55),
        options={"alpha": 1.0, "beta": 0.2, "noise_step": 500}, reading="vcd"),
    "deco": PopeProtocol(
        name="deco", source="zjunlp/Deco@cdc5c74 pope_llava.py",
        prompt_suffix="", decoding=Decoding(sample=False, max_new_tokens=5),
        options={"layers": None, "alpha": 0.6, "top_p": 0.9, "top_k": 20}, reading="deco"),
}


def variant_protocols(plan: VariantPlan, protocol: str) -> dict[str, PopeProtocol]:
    """Label -> the protocol each variant of ``plan`` follows under ``--protocol``.

    Raises:
        InputError: an unknown protocol.
    """
    if protocol not in PROTOCOLS:
        raise InputError(f"unknown --protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
    if protocol == "harness":
        return {label: HARNESS for label in plan.labels}
    return {spec.label: AUTHOR_PROTOCOLS.get(spec.variant, HARNESS) for spec in plan.specs}


def apply_protocols(plan: VariantPlan, protocols: Mapping[str, PopeProtocol]) -> VariantPlan:
    """``plan`` with each protocol's ``wrap`` options and decoding.

    A protocol's options come before the user's ``--variant-options``, which may not set the
    same keys (that would no longer be the published protocol).

    Raises:
        InputError: ``--variant-options`` sets an option that the protocol fixes (one line).
    """
    options = {label: dict(values) for label, values in plan.options.items()}
    decoding = dict(plan.decoding)
    for label, protocol in protocols.items():
        given = options.get(label, {})
        clash = sorted(set(given) & set(protocol.options))
        if clash:
            raise InputError(f"variant {label!r}: --protocol authors fixes {', '.join(clash)} "
                             f"({protocol.source}); drop it from --variant-options or use --protocol harness")
        fixed = {k: v for k, v in protocol.options.items() if v is not None}
        options[label] = {**fixed, **given}
        if protocol.decoding is not None:
            decoding[label] = protocol.decoding
    return VariantPlan(specs=plan.specs, options=options, profile=plan.profile, decoding=decoding)
