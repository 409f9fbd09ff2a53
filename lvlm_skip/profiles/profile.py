"""A model's layer profile: where its critical and mutation layers are, measured over many tokens.

One generated token gives one adjacent-layer JSD curve, and the detector (:mod:`lvlm_skip.detection`)
gives its critical layer ``c`` and mutation layers. A profile aggregates them over the tokens of
``N`` prompts (:func:`lvlm_skip.profile`, ``lvlm-skip profile``) and picks the model's ``c`` and ``M``
by a documented rule, so that static skipping does not rest on one position's curve:

* **critical histogram** ``H[c]``: the share of tokens whose critical layer is ``c`` (``c = 0``: the
  token's curve never stabilised);
* **mutation frequency** ``F[j]``: the share of tokens (with a critical layer) for which layer ``j``
  is a mutation layer;
* both over all generated tokens and over *content words* alone (tokens that start a word the
  data's annotations name as an object, e.g. AMBER's truth / hallucination words), since the
  paper ties mutations to information-bearing tokens.

**The rule** (:func:`choose_layers`), on the content-word statistics when there are at least
``min_tokens`` content tokens, else on all tokens:

* ``c`` = the median critical layer of the tokens that have one (robust to the skew of the
  histogram; the paper reads one layer off its Fig. 4 the same way);
* ``M`` = the layers after ``c`` whose mutation frequency is at least ``mutation_share`` (default
  0.10) and at least ``peak_share`` (default 0.5) of the most frequent layer's, at most
  ``max_mutations`` (default 4) of them, the most frequent first: the peak of the frequency curve,
  where mutations recur. ``M`` may be empty: the model then shows no mutation layer that recurs
  across tokens, and skip.2 has nothing to skip.

``wrap(model, variant, profile="profile.json")`` takes ``c`` and ``M`` from the file (explicit
``critical_layer`` / ``mutation_layers`` still win) and checks that the profile was made on a model
with the same number of layers.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..config import LayerChoice
from ..errors import InputError

PROFILE_FORMAT = "lvlm_skip.profile/1"


@dataclass(frozen=True)
class LayerStatistics:
    """Critical-layer histogram and mutation frequency over a set of tokens.

    Attributes:
        tokens: How many tokens.
        critical_histogram: ``L + 1`` shares, index ``c`` = tokens whose critical layer is ``c`` (0 = none).
        mutation_frequency: ``L`` shares, index ``j - 1`` = tokens with a critical layer for which layer ``j``
            is a mutation layer, over the tokens with a critical layer.
    """

    tokens: int
    critical_histogram: tuple[float, ...]
    mutation_frequency: tuple[float, ...]

    @classmethod
    def from_detections(cls, critical: np.ndarray, mutation: np.ndarray) -> "LayerStatistics":
        """From `(tokens,)` critical layers and `(tokens, L)` mutation flags."""
        critical = np.asarray(critical, dtype=np.int64)
        mutation = np.asarray(mutation, dtype=bool)
        num_layers = mutation.shape[-1]
        n = int(critical.shape[0])
        histogram = np.bincount(critical, minlength=num_layers + 1) / max(n, 1)
        stable = critical > 0
        frequency = mutation[stable].mean(axis=0) if stable.any() else np.zeros(num_layers)
        return cls(n, tuple(float(v) for v in histogram), tuple(float(v) for v in frequency))

    @property
    def num_layers(self) -> int:
        return len(self.mutation_frequency)

    def median_critical(self) -> int:
        """The median critical layer of the tokens that have one (0 when none has)."""
        shares = np.asarray(self.critical_histogram[1:])
        if shares.sum() <= 0:
            return 0
        cumulative = np.cumsum(shares) / shares.sum()
        return int(np.searchsorted(cumulative, 0.5) + 1)


@dataclass(frozen=True)
class LayerProfile:
    """A profile file's content (``profile.json``).

    Attributes:
        critical_layer: The model's critical layer ``c`` by :func:`choose_layers` (0 = none found).
        mutation_layers: Its mutation layers ``M``, ascending (may be empty).
        num_layers: ``L`` of the model it was measured on.
        statistics: ``{"all": LayerStatistics, "content": LayerStatistics}``.
        rule: The rule and its parameters, as applied.
        provenance: Model (class, path, weights digest), data (kind, root, digest, N), detection
            settings, readout, package version.
    """

    critical_layer: int
    mutation_layers: tuple[int, ...]
    num_layers: int
    statistics: dict[str, LayerStatistics]
    rule: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)

    def layer_choice(self, source: str = "profile") -> LayerChoice:
        """The profile's ``c`` and ``M`` as a :class:`~lvlm_skip.config.LayerChoice`."""
        return LayerChoice(self.critical_layer, tuple(self.mutation_layers), source=source)

    def to_dict(self) -> dict:
        return {
            "format": PROFILE_FORMAT,
            "critical_layer": self.critical_layer,
            "mutation_layers": list(self.mutation_layers),
            "num_layers": self.num_layers,
            "rule": self.rule,
            "statistics": {k: asdict(v) for k, v in self.statistics.items()},
            "provenance": self.provenance,
        }

    def save(self, path: str | Path) -> Path:
        """Write the profile as JSON (creating the parent folder)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> "LayerProfile":
        """Read a profile file.

        Raises:
            InputError: missing, unreadable or not a profile (one line naming the file).
        """
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise InputError(f"profile {str(path)!r} does not exist") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise InputError(f"cannot read profile {str(path)!r}: {' '.join(str(error).split())}") from None
        except RecursionError:
            raise InputError(f"cannot read profile {str(path)!r}: JSON nested too deeply") from None
        if not isinstance(data, dict) or data.get("format") != PROFILE_FORMAT:
            raise InputError(f"{str(path)!r} is not a layer profile (no \"format\": \"{PROFILE_FORMAT}\")")
        try:
            statistics = {k: LayerStatistics(int(v["tokens"]), tuple(v["critical_histogram"]), tuple(v["mutation_frequency"]))
                          for k, v in data.get("statistics", {}).items()}
            return cls(
                critical_layer=int(data["critical_layer"]),
                mutation_layers=tuple(int(j) for j in data["mutation_layers"]),
                num_layers=int(data["num_layers"]),
                statistics=statistics,
                rule=dict(data.get("rule", {})),
                provenance=dict(data.get("provenance", {})),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise InputError(f"profile {str(path)!r} is malformed: {type(error).__name__}: {error}") from None

    def check_model(self, num_layers: int, path: str | Path = "profile") -> None:
        """Raise ``InputError`` if the profile was measured on a model of another depth."""
        if self.num_layers != num_layers:
            raise InputError(f"profile {str(path)!r} was measured on a {self.num_layers}-layer model; this one has {num_layers}")


def choose_layers(
    statistics: dict[str, LayerStatistics],
    *,
    min_tokens: int = 50,
    mutation_share: float = 0.10,
    peak_share: float = 0.5,
    max_mutations: int = 4,
) -> tuple[int, tuple[int, ...], dict]:
    """The model's ``c`` and ``M`` from its statistics (the rule of the module docstring).

    Returns:
        ``(critical_layer, mutation_layers, rule)``, ``rule`` recording the parameters and the token set used.
    """
    content = statistics.get("content")
    basis = "content" if content is not None and content.tokens >= min_tokens else "all"
    stats = statistics[basis]
    critical = stats.median_critical()
    frequency = np.asarray(stats.mutation_frequency)
    after = frequency[critical:] if critical else np.zeros(0)
    peak = float(after.max()) if after.size else 0.0
    candidates = [(float(frequency[j - 1]), j) for j in range(critical + 1, stats.num_layers + 1)
                  if frequency[j - 1] >= mutation_share and frequency[j - 1] >= peak_share * peak]
    chosen = sorted(j for _, j in sorted(candidates, key=lambda fj: (-fj[0], fj[1]))[:max_mutations])
    rule = {"basis": basis, "min_tokens": min_tokens, "critical": "median critical layer of the tokens that have one",
            "mutation_share": mutation_share, "peak_share": peak_share, "max_mutations": max_mutations}
    return critical, tuple(chosen), rule
