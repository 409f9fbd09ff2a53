"""Compact synonym table for the 80 MS-COCO object categories (used by CHAIR).

CHAIR (Rohrbach et al., 2018, "Object Hallucination in Image Captioning") maps every
word or two-word phrase of a caption that names a COCO object to its category.  This
module ships a compact, hand-written table in the same spirit as the original
``synonyms.txt`` (it is not a copy of it):

* :data:`COCO_CATEGORIES`: the 80 category names exactly as spelled in COCO's
  ``instances_*.json`` (so they match :func:`eval.caption_data.load_instances`).
* :data:`COCO_SYNONYMS`: ``{singular word or two-word phrase: category name}``.  Keys
  are lower-case and singular, because captions are singularized before lookup.
* :data:`COCO_PHRASE_RULES`: two-word phrases rewritten before lookup (e.g.
  ``"baby dog" -> "dog"`` so that "baby" does not fire *person*; ``"toilet seat" ->
  "toilet"`` so that "seat" does not fire *chair*).  A value that is not a key of the
  synonym table (e.g. ``"home plate"``) simply swallows the phrase.

Any other ``{word: category}`` mapping can be passed to
:func:`eval.caption_metrics.chair_scores` instead.
"""

from __future__ import annotations

COCO_CATEGORIES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck",
    "boat", "traffic light", "fire hydrant", "stop sign", "parking meter", "bench",
    "bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra",
    "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee", "skis",
    "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard",
    "surfboard", "tennis racket", "bottle", "wine glass", "cup", "fork", "knife",
    "spoon", "bowl", "banana", "apple", "sandwich", "orange", "broccoli", "carrot",
    "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant", "bed",
    "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book",
    "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)

# category -> extra singular words / two-word phrases naming it (the category's own
# singular spelling is added automatically below).
_EXTRA: dict[str, tuple[str, ...]] = {
    "person": (
        "people", "man", "woman", "boy", "girl", "child", "kid", "baby", "toddler",
        "infant", "lady", "gentleman", "guy", "adult", "teenager", "teen", "player",
        "skier", "surfer", "skateboarder", "snowboarder", "rider", "biker", "cyclist",
        "pedestrian", "chef", "cook", "worker", "officer", "policeman", "cop",
        "soldier", "mother", "father", "son", "daughter", "passenger", "spectator",
        "tourist", "student", "batter", "catcher", "pitcher", "umpire", "bride",
        "groom", "cowboy", "human", "male", "female",
    ),
    "bicycle": ("bike", "cycle"),
    "car": ("automobile", "van", "minivan", "sedan", "suv", "jeep", "taxi", "cab",
            "limo", "limousine", "coupe"),
    "motorcycle": ("motorbike", "motor bike", "motor cycle", "scooter", "moped",
                   "dirt bike"),
    "airplane": ("aeroplane", "plane", "jet", "aircraft", "airliner", "jetliner",
                 "air plane"),
    "bus": ("minibus", "school bus", "trolley"),
    "train": ("locomotive", "tram", "subway"),
    "truck": ("pickup", "lorry", "firetruck", "fire truck"),
    "boat": ("ship", "sailboat", "sail boat", "yacht", "kayak", "canoe", "ferry",
             "raft", "rowboat", "vessel"),
    "traffic light": ("traffic signal", "stop light", "stoplight", "street light"),
    "fire hydrant": ("hydrant",),
    "parking meter": ("meter",),
    "bird": ("pigeon", "duck", "goose", "seagull", "gull", "parrot", "eagle", "owl",
             "swan", "sparrow", "pelican", "crow", "flamingo", "penguin"),
    "cat": ("kitten", "kitty"),
    "dog": ("puppy", "pup", "doggy", "hound"),
    "horse": ("pony", "foal", "stallion", "mare"),
    "sheep": ("lamb", "ram"),
    "cow": ("cattle", "bull", "calf", "ox"),
    "bear": ("polar bear", "grizzly"),
    "backpack": ("knapsack", "rucksack"),
    "umbrella": ("parasol",),
    "handbag": ("purse", "hand bag"),
    "tie": ("necktie",),
    "suitcase": ("suit case", "luggage"),
    "skis": ("ski",),
    "sports ball": ("ball", "football", "basketball", "volleyball", "softball",
                    "soccer ball", "tennis ball"),
    "baseball bat": ("bat",),
    "baseball glove": ("glove", "mitt"),
    "skateboard": ("skate board",),
    "surfboard": ("surf board",),
    "tennis racket": ("racket", "racquet"),
    "wine glass": ("goblet",),
    "cup": ("mug", "teacup", "coffee cup"),
    "sandwich": ("burger", "hamburger"),
    "hot dog": ("hotdog",),
    "donut": ("doughnut",),
    "cake": ("cupcake", "cheesecake"),
    "chair": ("seat", "stool", "armchair"),
    "couch": ("sofa", "loveseat"),
    "potted plant": ("houseplant", "house plant", "flowerpot", "flower pot"),
    "dining table": ("table", "desk", "kitchen table"),
    "toilet": ("urinal", "commode"),
    "tv": ("television",),
    "laptop": ("laptop computer", "computer"),
    "remote": ("remote control", "controller"),
    "cell phone": ("phone", "cellphone", "smartphone", "iphone", "mobile phone"),
    "oven": ("stove",),
    "refrigerator": ("fridge", "freezer"),
    "book": ("novel",),
    "scissors": ("scissor",),
    "teddy bear": ("teddy",),
    "hair drier": ("hair dryer", "hairdryer", "blow dryer"),
    "toothbrush": ("tooth brush",),
}

COCO_SYNONYMS: dict[str, str] = {cat: cat for cat in COCO_CATEGORIES}
for _cat, _words in _EXTRA.items():
    for _w in _words:
        COCO_SYNONYMS[_w] = _cat

_ANIMALS = ("bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear",
            "zebra", "giraffe", "animal", "cub")

COCO_PHRASE_RULES: dict[str, str] = {
    **{f"baby {a}": a for a in _ANIMALS},
    **{f"adult {a}": a for a in _ANIMALS},
    "passenger jet": "jet",
    "passenger train": "train",
    "bow tie": "tie",
    "toilet seat": "toilet",
    "home plate": "home plate",
}
