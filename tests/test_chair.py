"""CHAIR reproduces the original (LisaAnne/Hallucination, utils/chair.py + data/synonyms.txt).

Every test injects the offline stand-ins explicitly, so results do not depend on whether nltk or
pattern happen to be installed. The last group compares :func:`chair_scores` with a literal
transcription of the original algorithm (``OriginalChair``, test-only) on ~200 crafted captions.
"""

from __future__ import annotations

import configparser
import glob
import hashlib
import json
import random
from importlib import resources
from pathlib import Path

import pytest

from lvlm_skip.errors import InputError
from lvlm_skip.benchmarks.caption import chair
from lvlm_skip.benchmarks.caption.chair_text import (
    _IRREGULAR,
    singularize_noun,
    split_sentences,
    treebank_tokenize,
)

REPO = Path(__file__).resolve().parents[1]
SYNONYMS_PATH = resources.files("lvlm_skip.data").joinpath("files", "chair_synonyms.txt")
SYNONYMS_SHA256 = "b685537b36fe21b791c87151b96a991ceb582edff19f3da204dcc7a7905502f2"
TOOLS = {"tokenize": treebank_tokenize, "singularize": singularize_noun}


def objects(caption: str, **kwargs) -> list[tuple[str, str]]:
    return chair.caption_objects(caption, **TOOLS, **kwargs)


def categories(caption: str, **kwargs) -> list[str]:
    return [category for _, category in objects(caption, **kwargs)]


# --------------------------------------------------------------------------- the shipped table
def test_shipped_table_is_the_original_byte_for_byte():
    data = SYNONYMS_PATH.read_bytes()
    assert hashlib.sha256(data).hexdigest() == SYNONYMS_SHA256
    assert data.count(b"\n") == 80
    assert len(chair.load_vocabulary().category) == 403  # distinct words, as the issue counts them
    lines = [line.strip().split(", ") for line in data.decode().splitlines()]
    owners = {word: {line[0] for line in lines if word in line} for line in lines for word in line}
    assert all(len(owner) == 1 for owner in owners.values())  # so "a later line wins" never applies


def test_setup_cfg_installs_the_data_files():
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    patterns = config["options.package_data"]["lvlm_skip"].split()
    shipped = {Path(p).name for pattern in patterns for p in glob.glob(str(REPO / "lvlm_skip" / pattern))}
    assert {"chair_synonyms.txt", "README.md", "LICENSE"} <= shipped
    assert config["options"].getboolean("include_package_data")


def test_every_coco_category_is_a_first_entry():
    vocabulary = chair.load_vocabulary()
    assert len(set(vocabulary.category.values())) == 80
    assert all(vocabulary.category[name] == name for name in vocabulary.category.values())


# --------------------------------------------------------------------------- quirks of the original
def test_singular_bus_is_never_counted():
    assert objects("a bus and a minibus near an airbus") == []
    assert objects("two buses") == [("bus", "bus")]
    assert categories("a bus and a minibus", synonyms="corrected") == ["bus", "bus"]


def test_entries_with_a_leading_space_never_match():
    vocabulary = chair.load_vocabulary()
    assert {" motor bike", " cheesecake"} <= set(vocabulary.category)
    assert "motor bike" not in vocabulary.category and "cheesecake" not in vocabulary.category
    # the pair is merged first, so "motor bike" is not even a bike
    assert objects("a man on a motor bike eating cheesecake") == [("man", "person")]
    assert categories("a motor bike and a cheesecake", synonyms="corrected") == ["motorcycle", "cake"]


def test_capitalised_iphone_never_matches():
    assert "iPhone" in chair.load_vocabulary().category
    assert objects("a woman holding an iPhone") == [("woman", "person")]
    assert categories("an iPhone", synonyms="corrected") == ["cell phone"]


def test_other_singularizer_quirks_are_reproduced():
    assert objects("ties, canoes and doggies") == []
    assert categories("ties, canoes and doggies", synonyms="corrected") == ["tie", "boat", "dog"]


def test_unknown_synonym_table_is_rejected():
    with pytest.raises(InputError, match="synonyms must be one of"):
        chair.load_vocabulary("fixed")


# --------------------------------------------------------------------------- the rules
def test_train_tracks_are_not_a_train():
    assert objects("a train track") == []
    assert objects("a train on the train tracks.") == [("train", "train")]
    assert objects("a passenger train") == [("train", "train")]


@pytest.mark.parametrize("word, category", [
    ("pancake", "cake"), ("bagel", "donut"), ("sub", "sandwich"), ("bow", "tie"), ("panda", "bear"),
    ("feline", "cat"), ("monitor", "tv"), ("pancakes", "cake"), ("bagels", "donut"), ("subs", "sandwich"),
])
def test_words_of_the_original_are_counted(word, category):
    assert categories(f"a photo of a {word} here") == [category]


@pytest.mark.parametrize("word", ["batter", "umpire", "mug", "teddy", "hotdog"])
def test_words_outside_the_original_are_not_counted(word):
    assert word not in chair.load_vocabulary().category
    assert objects(f"a {word} and a {word}s") == []


@pytest.mark.parametrize("caption, expected", [
    ("a fire hydrant", [("fire hydrant", "fire hydrant")]),
    ("two hot dogs", [("hot dog", "hot dog")]),
    ("teddy bears on a bed", [("teddy bear", "teddy bear"), ("bed", "bed")]),
    ("a cell phone", [("cell phone", "cell phone")]),
    ("a wine glass and wine glasses", [("wine glass", "wine glass"), ("wine glass", "wine glass")]),
    ("a baby elephant and an adult giraffe", [("elephant", "elephant"), ("giraffe", "giraffe")]),
    ("a baby and an adult", [("baby", "person"), ("adult", "person")]),
    ("a passenger jet", [("jet", "airplane")]),
    ("a man in a bow tie", [("man", "person"), ("tie", "tie")]),
    ("a toilet seat", [("toilet", "toilet")]),
    ("a tennis racket", [("racket", "tennis racket")]),
    ("a sports ball", [("ball", "sports ball")]),
    ("a dining table", [("table", "dining table")]),
    ("a stove top oven", [("stove", "oven"), ("oven", "oven")]),
    ("a baby animal", []),
    ("at home plate", []),
])
def test_two_word_phrases(caption, expected):
    assert objects(caption) == expected


def test_a_seat_beside_a_toilet_is_dropped():
    assert objects("the seat of the toilet") == [("toilet", "toilet")]
    assert objects("a seat on a bench") == [("seat", "chair"), ("bench", "bench")]
    assert objects("urinals and seats") == [("urinal", "toilet"), ("seat", "chair")]


def test_repeated_mentions_are_repeated_in_caption_order():
    assert objects("A dog, two dogs and a cat chasing the dog.") == [
        ("dog", "dog"), ("dog", "dog"), ("cat", "cat"), ("dog", "dog")]
    assert objects("People and children.") == [("person", "person"), ("child", "person")]


def test_injected_tools_are_used():
    seen = []

    def tokenize(text):
        seen.append(text)
        return text.split()

    def singularize(word):
        return {"hounds": "hound"}.get(word, word)

    found = chair.caption_objects("Two Hounds", tokenize=tokenize, singularize=singularize)
    assert found == [("hound", "dog")] and seen == ["two hounds"]


def test_a_caption_must_be_text():
    with pytest.raises(InputError, match="must be a string"):
        chair.caption_objects(None)


# --------------------------------------------------------------------------- scores
def test_chair_scores_by_hand():
    candidates = {
        1: "A man riding a horse next to a dog.",              # dog hallucinated
        2: "Two dogs and a dog on a couch.",                    # both dogs hallucinated
        3: "A bus on train tracks.",                            # no mention at all
        4: "A baby elephant and people near a fire hydrant.",  # hydrant hallucinated
        99: "A cat.",                                           # no ground truth
    }
    truth = {1: {"person", "horse"}, 2: {"couch"}, 3: set(), 4: {"elephant", "person"}}
    out = chair.chair_scores(candidates, truth, **TOOLS)
    assert out["CHAIR_S"] == 3 / 4 and out["CHAIR_I"] == 4 / 9
    assert (out["n_captions"], out["n_hallucinated_captions"], out["n_mentions"],
            out["n_hallucinated_mentions"], out["n_missing_objects"]) == (4, 3, 9, 4, 1)
    assert out["per_caption"][2] == {"mentions": [["dog", "dog"], ["dog", "dog"], ["couch", "couch"]],
                                     "hallucinated": [["dog", "dog"], ["dog", "dog"]]}
    assert out["per_caption"][3] == {"mentions": [], "hallucinated": []}
    assert 99 not in out["per_caption"]
    json.dumps(out)  # the result is plain JSON


def test_chair_scores_without_captions_or_mentions_are_zero():
    assert chair.chair_scores({}, {}, **TOOLS)["CHAIR_S"] == 0.0
    out = chair.chair_scores({1: "nothing to see"}, {1: set()}, **TOOLS)
    assert (out["CHAIR_S"], out["CHAIR_I"], out["n_captions"]) == (0.0, 0.0, 1)


# --------------------------------------------------------------------------- ground truth
INSTANCES = {
    "images": [{"id": 1}, {"id": 2}, {"id": 3}],
    "categories": [{"id": 18, "name": "dog"}, {"id": 4, "name": "motorcycle"}, {"id": 1, "name": "person"}],
    "annotations": [{"image_id": 1, "category_id": 18}, {"image_id": 1, "category_id": 18},
                    {"image_id": 2, "category_id": 4}, {"image_id": 2, "category_id": 1}],
}


def test_image_objects_from_instances_dict_and_file(tmp_path):
    expected = {1: {"dog"}, 2: {"motorcycle", "person"}, 3: set()}
    assert chair.image_objects_from_instances(INSTANCES) == expected
    path = tmp_path / "instances_val2014.json"
    path.write_text(json.dumps(INSTANCES))
    assert chair.image_objects_from_instances(path) == expected
    assert chair.image_objects_from_instances(str(path)) == expected


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    ("[]", "top level must be a JSON object"),
    ('{"categories": [], "images": []}', "'annotations' must be a list"),
    ('{"categories": [{"id": 1}], "annotations": []}', r"categories\[0\] needs the keys id, name"),
    ('{"categories": [{"id": 1, "name": "person"}], "annotations": [{"image_id": 1}]}',
     r"annotations\[0\] needs the keys image_id, category_id"),
    ('{"categories": [{"id": 1, "name": "person"}], "annotations": [{"image_id": 1, "category_id": 7}]}',
     "unknown category_id 7"),
    ('{"categories": [], "annotations": [], "images": [{"file_name": "x.jpg"}]}', r"images\[0\] needs the keys id"),
])
def test_malformed_instances_raise_one_line_input_errors(tmp_path, content, message):
    path = tmp_path / "instances.json"
    path.write_text(content)
    with pytest.raises(InputError, match=message) as caught:
        chair.image_objects_from_instances(path)
    assert isinstance(caught.value, ValueError) and "\n" not in str(caught.value)


def test_categories_outside_the_table_are_left_out_with_a_warning(caplog):
    data = {"categories": [{"id": 1, "name": "unicorn"}, {"id": 2, "name": "dog"}],
            "annotations": [{"image_id": 5, "category_id": 1}, {"image_id": 5, "category_id": 2}, {"image_id": 6, "category_id": 1}]}
    assert chair.image_objects_from_instances(data) == {5: {"dog"}, 6: set()}
    assert "not scored: unicorn" in caplog.text


def test_missing_instances_file(tmp_path):
    with pytest.raises(InputError, match="cannot read COCO instances file"):
        chair.image_objects_from_instances(tmp_path / "absent.json")


def test_image_objects_from_captions():
    references = {7: ["Two dogs on a sofa.", "A puppy near a train track."], 8: [], "x": ["buses"]}
    assert chair.image_objects_from_captions(references, **TOOLS) == {7: {"dog", "couch"}, 8: set(), "x": {"bus"}}
    with pytest.raises(InputError, match="must be a list of captions"):
        chair.image_objects_from_captions({1: "a dog"}, **TOOLS)


# --------------------------------------------------------------------------- stand-ins
@pytest.mark.parametrize("plural, singular", [
    # pattern 3.6 outputs, traced by hand through its rules
    ("bus", "bu"), ("buses", "bus"), ("glass", "glas"), ("glasses", "glass"), ("tennis", "tenni"),
    ("sports", "sport"), ("people", "person"), ("women", "woman"), ("policemen", "policeman"),
    ("children", "child"), ("mice", "mouse"), ("knives", "knife"), ("leaves", "leaf"), ("geese", "goose"),
    ("oxen", "ox"), ("teeth", "tooth"), ("ties", "ty"), ("skis", "ski"), ("scissors", "scissors"),
    ("sheep", "sheep"), ("cattle", "cattle"), ("bison", "bison"), ("luggage", "luggage"),
    ("doggies", "doggies"), ("puppies", "puppy"), ("benches", "bench"), ("boxes", "box"),
    ("dishes", "dish"), ("tomatoes", "tomato"), ("canoes", "cano"), ("shoes", "shoe"), ("ears", "ears"),
    ("giraffes", "giraffe"), ("thieves", "thieve"), ("wolves", "wolf"), ("safari", "safarus"),
    ("pasta", "pastum"), ("dogs'", "dog's"), ("mothers-in-law", "mother-in-law"), ("hot-dogs", "hot-dog"),
])
def test_singularizer_stand_in_follows_pattern(plural, singular):
    assert singularize_noun(plural) == singular


def test_singularizer_stand_in_is_independent_of_dict_order():
    # pattern under Python 2 tries the irregular endings in hash order; the order only matters if
    # one ending ends another, and none does
    assert not [(a, b) for a in _IRREGULAR for b in _IRREGULAR if a != b and a.endswith(b)]


def test_table_words_that_singularize_away_are_exactly_the_documented_ones():
    changed = {w: singularize_noun(w) for w in chair.load_vocabulary().category
               if " " not in w and singularize_noun(w) != w}
    assert changed == {"bus": "bu", "minibus": "minibu", "airbus": "airbu", "people": "person",
                       "children": "child", "oxen": "ox", "skis": "ski"}


@pytest.mark.parametrize("text, tokens", [
    ("a dog. a cat.", ["a", "dog", ".", "a", "cat", "."]),
    ("a man's dog, on a seat!", ["a", "man", "'s", "dog", ",", "on", "a", "seat", "!"]),
    ('a "dog." (a cat.) end', ["a", "``", "dog", ".", "''", "(", "a", "cat", ".", ")", "end"]),
    ("dogs' bowls can't", ["dogs", "'", "bowls", "ca", "n't"]),
    ("a dog... and a cat--why?", ["a", "dog", "...", "and", "a", "cat", "--", "why", "?"]),
    ("e.g. a dog at 3.5 m. then", ["e.g.", "a", "dog", "at", "3.5", "m.", "then"]),
    ("a hot-dog stand; a bus-stop", ["a", "hot-dog", "stand", ";", "a", "bus-stop"]),
])
def test_tokenizer_stand_in_follows_nltk_word_tokenize(text, tokens):
    assert treebank_tokenize(text) == tokens


def test_sentence_splitter_keeps_closing_punctuation():
    assert split_sentences('he said "a dog." then (a cat.) ok') == ['he said "a dog."', "then (a cat.)", "ok"]


# --------------------------------------------------------------------------- literal oracle
class OriginalChair:
    """Test oracle: utils/chair.py's CHAIR transcribed statement by statement (Python 3 syntax).

    Only the parts that count are kept: the table and rule set-up of ``__init__``,
    ``caption_to_words``, the counting loop of ``compute_chair`` and the two ground-truth readers.
    """

    def __init__(self, tokenize, singularize):
        self.tokenize, self.singularize = tokenize, singularize
        with open(SYNONYMS_PATH) as handle:
            synonyms = handle.readlines()
        synonyms = [s.strip().split(", ") for s in synonyms]
        self.mscoco_objects = []
        self.inverse_synonym_dict = {}
        for synonym in synonyms:
            self.mscoco_objects.extend(synonym)
            for s in synonym:
                self.inverse_synonym_dict[s] = synonym[0]
        coco_double_words = [
            "motor bike", "motor cycle", "air plane", "traffic light", "street light", "traffic signal",
            "stop light", "fire hydrant", "stop sign", "parking meter", "suit case", "sports ball",
            "baseball bat", "baseball glove", "tennis racket", "wine glass", "hot dog", "cell phone",
            "mobile phone", "teddy bear", "hair drier", "potted plant", "bow tie", "laptop computer",
            "stove top oven", "hot dog", "teddy bear", "home plate", "train track"]
        animal_words = ["bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra",
                        "giraffe", "animal", "cub"]
        vehicle_words = ["jet", "train"]
        self.double_word_dict = {}
        for double_word in coco_double_words:
            self.double_word_dict[double_word] = double_word
        for animal_word in animal_words:
            self.double_word_dict["baby %s" % animal_word] = animal_word
            self.double_word_dict["adult %s" % animal_word] = animal_word
        for vehicle_word in vehicle_words:
            self.double_word_dict["passenger %s" % vehicle_word] = vehicle_word
        self.double_word_dict["bow tie"] = "tie"
        self.double_word_dict["toilet seat"] = "toilet"
        self.double_word_dict["wine glas"] = "wine glass"

    def caption_to_words(self, caption):
        words = self.tokenize(caption.lower())
        words = [self.singularize(w) for w in words]
        i = 0
        double_words = []
        idxs = []
        while i < len(words):
            idxs.append(i)
            double_word = " ".join(words[i:i + 2])
            if double_word in self.double_word_dict:
                double_words.append(self.double_word_dict[double_word])
                i += 2
            else:
                double_words.append(words[i])
                i += 1
        words = double_words
        if ("toilet" in words) & ("seat" in words):
            words = [word for word in words if word != "seat"]
        idxs = [idxs[idx] for idx, word in enumerate(words) if word in set(self.mscoco_objects)]
        words = [word for word in words if word in set(self.mscoco_objects)]
        node_words = []
        for word in words:
            node_words.append(self.inverse_synonym_dict[word])
        return words, node_words, idxs, double_words

    def annotations_from_segments(self, imids, coco_segments):
        imid_to_objects = {imid: [] for imid in imids}
        id_to_name = {}
        for cat in coco_segments["categories"]:
            id_to_name[cat["id"]] = cat["name"]
        for annotation in coco_segments["annotations"]:
            imid = annotation["image_id"]
            if imid in imid_to_objects:
                imid_to_objects[imid].append(self.inverse_synonym_dict[id_to_name[annotation["category_id"]]])
        return {imid: set(objs) for imid, objs in imid_to_objects.items()}

    def annotations_from_captions(self, imids, caption_annotations):
        imid_to_objects = {imid: set() for imid in imids}
        for annotation in caption_annotations:
            imid = annotation["image_id"]
            if imid in imid_to_objects:
                _, node_words, _, _ = self.caption_to_words(annotation["caption"])
                imid_to_objects[imid].update(node_words)
        return imid_to_objects

    def compute_chair(self, caps, imid_to_objects):
        num_caps = 0.
        num_hallucinated_caps = 0.
        hallucinated_word_count = 0.
        coco_word_count = 0.
        sentences = []
        for cap_eval in caps:
            cap = cap_eval["caption"]
            imid = cap_eval["image_id"]
            words, node_words, idxs, raw_words = self.caption_to_words(cap)
            gt_objects = imid_to_objects[imid]
            cap_dict = {"image_id": imid, "mscoco_hallucinated_words": [],
                        "mscoco_generated_words": list(node_words), "words": words}
            coco_word_count += len(node_words)
            hallucinated = False
            for word, node_word, idx in zip(words, node_words, idxs):
                if node_word not in gt_objects:
                    hallucinated_word_count += 1
                    cap_dict["mscoco_hallucinated_words"].append((word, node_word))
                    hallucinated = True
            num_caps += 1
            if hallucinated:
                num_hallucinated_caps += 1
            sentences.append(cap_dict)
        return {"sentences": sentences, "CHAIRs": num_hallucinated_caps / num_caps,
                "CHAIRi": hallucinated_word_count / coco_word_count}


DISTRACTORS = [
    "train tracks", "a toilet seat", "the seat", "home plate", "a motor bike", "an iPhone", "a bus",
    "the batter", "an umpire", "a mug", "a teddy", "a hotdog", "a baby animal", "passenger", "a baby",
    "the adult cub", "a stove top oven", "wine glasses", "a tennis racket", "some ties", "doggies",
    "the dog's bowl", "grass", "a table", "cheesecake", "glasses", "people", "children", "a bow",
]
TEMPLATES = [
    "A {a} next to {b}.", "{a} and {b} on the street", "Two {a}s near {b}, with {c}.",
    "{a} {a} and {b}!", "there is {a}. {b} sits beside {c}.", "a photo of {a}'s {b} and {c}s",
    "{A} with {b}; also {c}?", "\"{a}\" (and {b}) -- {c}",
]


RULE_CAPTIONS = [  # interactions of the rules, placed among the random captions
    "a toilet with a seat and a seat cushion", "toilets, seats and a chair", "the toilet seat is up; a seat",
    "a urinal and a seat", "a passenger train on train tracks", "passenger train track", "baby bird bird feeder",
    "a hot dog dog", "teddy bear bears", "a traffic light light", "adult baby elephant", "baby baby cat",
    "a bus, a minibus, two buses", "motor bike motorbike motor cycle", "bow tie bow ties",
    "wine glass glass wine glasses", "the iPhone and the iphone", "cheese cake and cheesecake",
    "a stop sign sign", "a home plate plate", "dogs' dog's dogs",
]


def crafted_captions(n: int = 200, seed: int = 0) -> list[str]:
    """Captions over the synonyms list, its plurals, the two-word tables and distractor words."""
    rng = random.Random(seed)
    words = sorted({w.strip() for w in chair.load_vocabulary().category})
    phrases = sorted(chair.load_vocabulary().double_words)
    pool = words + phrases + DISTRACTORS

    def pick() -> str:
        item = rng.choice(pool)
        return item + "s" if rng.random() < 0.3 and not item.endswith("s") else item

    captions = [rng.choice(TEMPLATES).format(a=pick(), b=pick(), c=pick(), A=pick().upper()) for _ in range(n)]
    for i, caption in enumerate(RULE_CAPTIONS[:n // 5]):
        captions[5 * i + 1] = caption
    return captions


def test_chair_scores_agree_exactly_with_the_literal_original():
    rng = random.Random(1)
    captions = {i: caption for i, caption in enumerate(crafted_captions())}
    all_categories = sorted(set(chair.load_vocabulary().category.values()))
    truth = {i: set(rng.sample(all_categories, rng.randint(0, 6))) for i in captions}
    for i, caption in captions.items():  # make some captions fully grounded
        if i % 5 == 0:
            truth[i] |= {category for _, category in objects(caption)}
    oracle = OriginalChair(treebank_tokenize, singularize_noun)
    expected = oracle.compute_chair([{"image_id": i, "caption": c} for i, c in captions.items()], truth)
    out = chair.chair_scores(captions, truth, **TOOLS)
    for sentence in expected["sentences"]:
        got = out["per_caption"][sentence["image_id"]]
        mentions = [list(m) for m in zip(sentence["words"], sentence["mscoco_generated_words"])]
        assert got["mentions"] == mentions, captions[sentence["image_id"]]
        assert got["hallucinated"] == [list(m) for m in sentence["mscoco_hallucinated_words"]]
    assert out["CHAIR_S"] == expected["CHAIRs"] and out["CHAIR_I"] == expected["CHAIRi"]
    # the crafted set exercises both outcomes and many mentions
    assert 0 < out["n_hallucinated_captions"] < out["n_captions"] == 200 and out["n_mentions"] > 400


def test_ground_truth_builders_agree_with_the_literal_original():
    oracle = OriginalChair(treebank_tokenize, singularize_noun)
    captions = crafted_captions(60, seed=2)
    references = {i: captions[3 * i:3 * i + 3] for i in range(20)}
    annotations = [{"image_id": i, "caption": c} for i, caps in references.items() for c in caps]
    assert chair.image_objects_from_captions(references, **TOOLS) == oracle.annotations_from_captions(
        references, annotations)
    assert chair.image_objects_from_instances(INSTANCES) == oracle.annotations_from_segments([1, 2, 3], INSTANCES)
