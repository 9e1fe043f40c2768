"""The search spaces shared by every task: `paper` (../shared/docs/SEARCH_SPACE.md, the paper's
Table 1; the default) and `extended` (the paper's decisions, then three of the wide tower's
features: n-gram range, weighting and vocabulary size; docs/method.md says why).

A configuration is one option index per decision, in a fixed order; the controller emits them in
that order. `Config` is the readable form used everywhere else (child, store, reports). The
paper space's decisions, and so its fingerprint, never change: saved controllers and stores of
it stay valid.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, Sequence

import numpy as np

DISABLE = "disable"  # last option of the two regulariser decisions: switch that tower off


@dataclasses.dataclass(frozen=True)
class Decision:
    """One categorical decision: a name and its options (JSON-serialisable values)."""

    name: str
    options: tuple[Any, ...]

    @property
    def size(self) -> int:
        return len(self.options)


_LEARNING_RATES = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
_REGULARISERS = (0.0, 1e-5, 1e-4, 1e-3, 0.01, 0.1, DISABLE)

# Decisions after the module decision; their options do not depend on the modules available.
_FIXED_DECISIONS = (
    Decision("fine_tune", (True, False)),
    Decision("num_layers", (1, 2, 3, 5, 7)),
    Decision("layer_size", (8, 16, 32, 64, 128, 256)),
    Decision("activation", ("relu", "swish")),
    Decision("normalization", ("none", "batch", "layer")),
    Decision("dropout", (0.0, 0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6)),
    Decision("deep_learning_rate", _LEARNING_RATES),
    Decision("deep_l2", _REGULARISERS),
    Decision("wide_learning_rate", _LEARNING_RATES),
    Decision("wide_l1", _REGULARISERS),
    Decision("train_samples", (1000, 3000, 10000, 30000, 100000, 300000, 1000000)),
)

PAPER = "paper"
EXTENDED = "extended"
# Wide-tower features of the paper's child; the extended space searches over them.
PAPER_WIDE = {"wide_ngrams": 1, "wide_weighting": "binary", "wide_vocab_size": 30_000}
# Decisions appended to the paper's, per space (the paper space appends none).
_SPACE_EXTRAS: dict[str, tuple[Decision, ...]] = {
    PAPER: (),
    EXTENDED: (
        Decision("wide_ngrams", (1, 2)),  # unigrams, or unigrams and bigrams
        Decision("wide_weighting", ("binary", "tfidf")),  # tfidf: l2-normalised per document
        Decision("wide_vocab_size", (30_000, 100_000, 300_000)),
    ),
}
SPACES = tuple(_SPACE_EXTRAS)


@dataclasses.dataclass(frozen=True)
class Config:
    """One readable child configuration; `deep_l2`/`wide_l1` may be DISABLE."""

    module: str
    fine_tune: bool
    num_layers: int
    layer_size: int
    activation: str
    normalization: str
    dropout: float
    deep_learning_rate: float
    deep_l2: float | str
    wide_learning_rate: float
    wide_l1: float | str
    train_samples: int
    wide_ngrams: int = PAPER_WIDE["wide_ngrams"]
    wide_weighting: str = PAPER_WIDE["wide_weighting"]
    wide_vocab_size: int = PAPER_WIDE["wide_vocab_size"]

    @property
    def deep_enabled(self) -> bool:
        return self.deep_l2 != DISABLE

    @property
    def wide_enabled(self) -> bool:
        return self.wide_l1 != DISABLE

    @property
    def train_steps(self) -> int:
        """Steps of batch 100, as in the paper: samples / 100."""
        return max(1, self.train_samples // 100)

    def wide_setting(self) -> tuple[int, str, int]:
        """(n-gram range, weighting, vocabulary size): what the wide tower's features depend on."""
        return self.wide_ngrams, self.wide_weighting, self.wide_vocab_size

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """Wide-tower fields at the paper's values are left out: a paper configuration is stored
        exactly as before the extended space existed (older code reads it)."""
        values = {k: v for k, v in self.to_dict().items()
                  if k not in PAPER_WIDE or v != PAPER_WIDE[k]}
        return json.dumps(values, sort_keys=True)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "Config":
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> "Config":
        return cls.from_dict(json.loads(text))

    def describe(self, module_trains: bool = True) -> str:
        """One line for logs and reports; `module_trains=False` for a module fine_tune does not
        train (image modules without --fine_tune_images), so the line says what was trained."""
        deep = "off" if not self.deep_enabled else (
            f"{self.num_layers}x{self.layer_size} {self.activation} norm={self.normalization} "
            f"dropout={self.dropout} lr={self.deep_learning_rate} l2={self.deep_l2}")
        wide = "off" if not self.wide_enabled else f"lr={self.wide_learning_rate} l1={self.wide_l1}"
        if self.wide_enabled and self.wide_setting() != tuple(PAPER_WIDE.values()):
            wide += (f" {self.wide_ngrams}-grams {self.wide_weighting} "
                     f"vocab={self.wide_vocab_size}")
        tune = "frozen" if not self.fine_tune else (
            "fine-tuned" if module_trains else "frozen; image modules fine-tune only with --fine_tune_images")
        return (f"module={self.module} ({tune}); deep[{deep}]; wide[{wide}]; "
                f"samples={self.train_samples}")


class SearchSpace:
    """The decisions of space `name` (12 for `paper`, 15 for `extended`), the module decision's
    options taken from the module registry.

    Modules of every modality share decision 1; `allowed_modules` restricts it per task.
    """

    def __init__(self, modules: Sequence[str], name: str = PAPER):
        if not modules:
            raise ValueError("a search space needs at least one module")
        if name not in _SPACE_EXTRAS:
            raise ValueError(f"unknown search space {name!r}; known: {', '.join(SPACES)}")
        self.name = name
        self.decisions: tuple[Decision, ...] = ((Decision("module", tuple(modules)),)
                                                + _FIXED_DECISIONS + _SPACE_EXTRAS[name])

    @classmethod
    def from_json(cls, saved: list[dict[str, Any]]) -> "SearchSpace":
        """The space `to_json` wrote (a saved controller's): its modules and its name.

        Raises:
            ValueError: the decisions after the module are not those of any known space.
        """
        modules = next((d["options"] for d in saved if d.get("name") == "module"), None)
        if not modules:
            raise ValueError("the saved space has no module decision")
        for name in SPACES:
            space = cls(modules, name)
            if space.to_json() == saved:
                return space
        raise ValueError("the saved space is none of the known spaces "
                         f"({', '.join(SPACES)}): it was written by other code")

    @property
    def modules(self) -> tuple[str, ...]:
        return self.decisions[0].options

    @property
    def sizes(self) -> list[int]:
        return [d.size for d in self.decisions]

    def __len__(self) -> int:
        return len(self.decisions)

    def num_configurations(self) -> int:
        return int(np.prod([d.size for d in self.decisions], dtype=np.int64))

    def to_config(self, actions: Sequence[int]) -> Config:
        """Option indices, one per decision, -> readable Config."""
        if len(actions) != len(self.decisions):
            raise ValueError(f"expected {len(self.decisions)} actions, got {len(actions)}")
        values = {d.name: d.options[int(a)] for d, a in zip(self.decisions, actions)}
        return Config(**values)

    def to_actions(self, config: Config) -> list[int]:
        """Readable Config -> option indices (the inverse of `to_config`)."""
        values = config.to_dict()
        searched = {d.name for d in self.decisions}
        fixed = {k: v for k, v in PAPER_WIDE.items() if k not in searched and values[k] != v}
        try:
            if fixed:
                raise ValueError(f"{fixed} are not searched in the {self.name} space")
            return [d.options.index(values[d.name]) for d in self.decisions]
        except ValueError as err:
            raise ValueError(f"configuration is not in the {self.name} search space: {config}"
                             ) from err

    def module_mask(self, allowed_modules: Sequence[str]) -> np.ndarray:
        """Boolean mask over the module decision: True where the task may use that module."""
        allowed = set(allowed_modules)
        mask = np.array([m in allowed for m in self.modules])
        if not mask.any():
            raise ValueError(f"no module of {sorted(allowed)} is in the search space {self.modules}")
        return mask

    def sample_actions(self, rng: np.random.Generator, allowed_modules: Sequence[str] | None = None
                       ) -> list[int]:
        """Uniformly random option indices (the module restricted to `allowed_modules`)."""
        actions = [int(rng.integers(d.size)) for d in self.decisions]
        if allowed_modules is not None:
            choices = np.flatnonzero(self.module_mask(allowed_modules))
            actions[0] = int(rng.choice(choices))
        return actions

    def to_json(self) -> list[dict[str, Any]]:
        return [{"name": d.name, "options": list(d.options)} for d in self.decisions]

    def fingerprint(self) -> str:
        """A short stable hash: saved controllers check it before reuse."""
        blob = json.dumps(self.to_json(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def describe_difference(self, other_json: list[dict[str, Any]]) -> str:
        """Human-readable first difference between this space and a saved one."""
        mine = self.to_json()
        if len(mine) != len(other_json):
            try:
                saved_name = SearchSpace.from_json(other_json).name
            except ValueError:
                return f"{len(other_json)} decisions saved, {len(mine)} now"
            return f"saved for --space={saved_name}, this run uses --space={self.name}"
        for a, b in zip(other_json, mine):
            if a != b:
                return f"decision '{b['name']}': saved options {a['options']}, now {b['options']}"
        return "no difference"
