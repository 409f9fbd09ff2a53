"""Hand-checked AMBER metric counts on a tiny fixture with an injected backend.

The backend is deterministic (lower-cased letter runs are the "nouns", similarity
is 1.0 for equal words plus a few fixed pairs) so the counting logic is tested
independently of nltk/spaCy.
"""

from __future__ import annotations

import pytest

from lvlm_skip.benchmarks.amber.metrics import normalize_yes_no, score_discriminative, score_generative
from lvlm_skip.benchmarks.language import OfflineBackend, pick_backend, singular_candidates

RELATION = {
    "dog": ["puppy"], "cat": ["kitten"], "grass": ["lawn"], "car": [],
    "tree": ["forest"], "forest": ["tree"], "man": ["person"], "person": ["man", "people"],
    "sky": [], "bird": [], "horse": [], "wolf": [],
}
SAFE_WORDS = ["sky"]

ANNOTATIONS = {
    1: {"id": 1, "type": "generative", "truth": ["dog", "grass"], "hallu": ["cat", "car"]},
    2: {"id": 2, "type": "generative", "truth": ["tree", "forest", "dog"], "hallu": ["horse"]},
    3: {"id": 3, "type": "generative", "truth": ["man"], "hallu": ["bird"]},
    # existence
    101: {"id": 101, "type": "discriminative-hallucination", "truth": "yes"},
    102: {"id": 102, "type": "discriminative-hallucination", "truth": "no"},
    103: {"id": 103, "type": "discriminative-hallucination", "truth": "no"},
    104: {"id": 104, "type": "discriminative-hallucination", "truth": "yes"},
    # attribute: state, number, action
    201: {"id": 201, "type": "discriminative-attribute-state", "truth": "yes"},
    202: {"id": 202, "type": "discriminative-attribute-state", "truth": "no"},
    301: {"id": 301, "type": "discriminative-attribute-number", "truth": "yes"},
    302: {"id": 302, "type": "discriminative-attribute-number", "truth": "no"},
    401: {"id": 401, "type": "discriminative-attribute-action", "truth": "no"},
    # relation (both official type names)
    501: {"id": 501, "type": "discriminative-relation", "truth": "yes"},
    502: {"id": 502, "type": "relation", "truth": "no"},
    503: {"id": 503, "type": "relation", "truth": "no"},
}


class FakeBackend:
    """Nouns = lower-case letter runs; similarity 1.0 if equal, else a fixed table, else 0."""

    PAIRS = {frozenset(("wolf", "dog")): 0.85, frozenset(("horse", "dog")): 0.8}

    def extract_nouns(self, text: str) -> list[str]:
        import re

        return re.findall(r"[a-z]+", text.lower())

    def similarity(self, word1: str, word2: str) -> float:
        if word1 == word2:
            return 1.0
        return self.PAIRS.get(frozenset((word1, word2)), 0.0)


GEN_RESPONSES = {
    # nouns in the vocabulary: puppy, lawn, kitten, sky
    #   puppy -> associate of dog -> dog covered; lawn -> grass covered;
    #   kitten -> associate of hallu cat -> cat mentioned, not similar to any truth
    #   candidate -> hallucinated; sky -> safe word, ignored.
    #   hallucinated 1 of 4 nouns; cover 2/2; cog 1/2 (cat yes, car no).
    1: "A puppy on the lawn with a kitten under the sky.",
    # nouns: forest, horse, wolf. Truth candidates in official order:
    #   [forest(assoc of tree), tree(assoc of forest), puppy(assoc of dog), tree, forest, dog]
    #   forest -> first match is the associate of *tree* -> tree covered (official quirk:
    #     forest itself stays uncovered);
    #   horse -> hallu word -> mentioned; similarity(horse, dog) = 0.8 is NOT > 0.8 -> hallucinated;
    #   wolf -> similarity(wolf, dog) = 0.85 > 0.8 -> dog covered, not hallucinated.
    #   hallucinated 1 of 3; cover 2/3 (tree, dog); cog 1/1.
    2: "A forest with a horse and a wolf.",
    # nouns: person, sky -> person is an associate of man -> man covered; sky safe.
    #   hallucinated 0 of 2; cover 1/1; cog 0/1 (bird not mentioned).
    3: "A person stands under the sky.",
    # discriminative ids are ignored by the generative scorer
    101: "Yes",
}


def test_generative_counts_match_hand_computation():
    got = score_generative(GEN_RESPONSES, ANNOTATIONS, RELATION, SAFE_WORDS, FakeBackend())
    # CHAIR = (1 + 1 + 0) / (4 + 3 + 2 + 0.001) = 22.22 -> 22.2
    # Cover = (2 + 2 + 1) / (2 + 3 + 1 + 0.001) = 83.32 -> 83.3
    # Cog   = (1 + 1 + 0) / (2 + 1 + 1 + 0.001) = 49.99 -> 50.0
    # Hal   = 100 - 1 / (3 + 0.001) * 100 = 66.68 -> 66.7 (responses 1 and 2 hallucinate)
    assert got == {"CHAIR": 22.2, "Cover": 83.3, "Hal": 66.7, "Cog": 50.0, "n_generative": 3}


def test_similarity_threshold_is_strict_and_configurable():
    # With threshold 0.9, wolf (0.85 to dog) is no longer a synonym of a truth word:
    # CHAIR = 3 / 9.001 = 33.33 -> 33.3; Cover = 4 / 6.001 = 66.66 -> 66.7; Hal unchanged.
    got = score_generative(GEN_RESPONSES, ANNOTATIONS, RELATION, SAFE_WORDS, FakeBackend(), sim_threshold=0.9)
    assert (got["CHAIR"], got["Cover"], got["Hal"], got["Cog"]) == (33.3, 66.7, 66.7, 50.0)
    # With threshold 0.79, horse (0.8 to dog) also becomes a synonym of dog:
    # CHAIR = 1 / 9.001 = 11.1; Cover unchanged (dog already covered by wolf); Hal = 100 - 2/3.001 = 33.4.
    got = score_generative(GEN_RESPONSES, ANNOTATIONS, RELATION, SAFE_WORDS, FakeBackend(), sim_threshold=0.79)
    assert (got["CHAIR"], got["Cover"], got["Hal"]) == (11.1, 83.3, 33.4)


def test_safe_word_never_hallucinated_and_unknown_words_ignored():
    # "sky" is safe; "spaceship" is not in relation.json so it is never a candidate noun.
    got = score_generative({3: "sky spaceship sky"}, ANNOTATIONS, RELATION, SAFE_WORDS, FakeBackend())
    # nouns: sky, sky -> 0 hallucinated / 2; cover 0/1; cog 0/1;
    # Hal = 100 - 1 / 1.001 * 100 = 0.0999 -> 0.1 (the 0.001 initial value shows through).
    assert got == {"CHAIR": 0.0, "Cover": 0.0, "Hal": 0.1, "Cog": 0.0, "n_generative": 1}


def test_empty_inputs_use_official_initial_values():
    assert score_generative({}, ANNOTATIONS, RELATION, SAFE_WORDS, FakeBackend())["CHAIR"] == 0.0
    assert score_discriminative({}, ANNOTATIONS)["F1"] == 0.0


DISC_RESPONSES = {
    101: "Yes",                  # yes/Yes  correct
    102: "No",                   # no/No    correct, true negative
    103: "Yes, there is.",       # no/Yes   wrong
    104: "There is no dog.",     # yes/No   wrong ("no" substring)
    201: "yes",                  # yes/Yes  correct (case-insensitive)
    202: "No",                   # no/No    correct
    301: "2",                    # yes/neither  wrong
    302: "Maybe",                # no/neither   wrong, not an answered No
    401: "Yes",                  # no/Yes   wrong
    501: "Yes",                  # yes/Yes  correct
    502: "No",                   # no/No    correct
    503: "I do not know",        # no -> "no" substring of "not" -> No -> correct (official substring rule)
    1: "a description",          # generative ids are ignored
}


def test_discriminative_counts_match_hand_computation():
    got = score_discriminative(DISC_RESPONSES, ANNOTATIONS)
    expected = {
        # overall: correct 7 / 12.001; no-truth 7 (4 answered No) ; answered No 5 (4 truly no)
        "Accuracy": 58.3, "Recall": 57.1, "Precision": 80.0,
        # F1 = 2 * .571 * .8 / (.571 + .8 + .0001) = 66.6
        "F1": 66.6,
        # existence: correct 2/4.001; recall 1/2.001; precision 1/2.001; F1 = .5/1.001 = 49.95005 -> 50.0
        "existence_Accuracy": 50.0, "existence_Precision": 50.0, "existence_Recall": 50.0, "existence_F1": 50.0,
        # attribute = state+number+action: correct 2/5.003 = 40.0; recall 1/3.003 = 33.3;
        # precision 1/1.003 = 99.7; F1 = 2*.333*.997/(1.3301) = 49.9
        "attribute_Accuracy": 40.0, "attribute_Precision": 99.7, "attribute_Recall": 33.3, "attribute_F1": 49.9,
        # state: 2/2.001 = 100.0; recall 1/1.001 = 99.9; precision 99.9; F1 = 99.9
        "state_Accuracy": 100.0, "state_Precision": 99.9, "state_Recall": 99.9, "state_F1": 99.9,
        # number: nothing right, no "No" answers -> all 0
        "number_Accuracy": 0.0, "number_Precision": 0.0, "number_Recall": 0.0, "number_F1": 0.0,
        "action_Accuracy": 0.0, "action_Precision": 0.0, "action_Recall": 0.0, "action_F1": 0.0,
        # relation: 3/3.001 = 99.97 -> 100.0; recall 2/2.001 = 99.95 -> 100.0; precision 100.0;
        # F1 = 2 / 2.0001 = 99.995 -> 100.0
        "relation_Accuracy": 100.0, "relation_Precision": 100.0, "relation_Recall": 100.0, "relation_F1": 100.0,
        "n_discriminative": 12,
    }
    assert got == expected


def test_official_exact_answers_without_normalization():
    # The official scorer compares with "Yes"/"No" exactly: "yes" is neither answer.
    got = score_discriminative({201: "yes", 202: "No"}, ANNOTATIONS, normalize=False)
    assert got["state_Accuracy"] == 50.0  # 1 / 2.001


@pytest.mark.parametrize("text,expected", [
    ("Yes.", "Yes"), ("NO", "No"), ("yes and no", "Yes"), ("I don't know", "No"), ("2", "2"),
])
def test_normalize_yes_no(text, expected):
    assert normalize_yes_no(text) == expected


def test_offline_backend_lemmatizes_against_vocabulary():
    vocab = set(RELATION) | {"bus", "glasses", "leaf", "child"} | {w for v in RELATION.values() for w in v}
    backend = OfflineBackend(vocab)
    assert backend.extract_nouns("Two dogs, some buses, the glasses, leaves and children on grass.") == [
        "dog", "bus", "glasses", "leaf", "child", "grass"]
    assert backend.similarity("dog", "dog") == 1.0 and backend.similarity("dog", "puppy") == 0.0
    assert "berry" in singular_candidates("berries")


def test_pick_backend_offline_and_unknown():
    backend, name = pick_backend("offline", {"dog"})
    assert name.startswith("offline") and backend.extract_nouns("dogs") == ["dog"]
    with pytest.raises(ValueError):
        pick_backend("bogus")
