"""The scene data model: :class:`SceneObject` and :class:`Scene`, and the canonical caption."""

from __future__ import annotations

import dataclasses

from PIL import Image

from .catalogue import NUMBER_WORDS, OBJECTS, POSITION_PHRASE


@dataclasses.dataclass(frozen=True)
class SceneObject:
    """One object kind in a scene (possibly several copies).

    Attributes:
        kind: Object kind, a key of ``OBJECTS``.
        color: Colour name, a key of ``COLORS``.
        count: Number of copies (1-3).
        size: ``"small"`` or ``"large"``.
        position: One of ``POSITIONS``.
        boxes: Pixel boxes ``(x, y, w, h)`` of the drawn copies.
    """

    kind: str
    color: str
    count: int
    size: str
    position: str
    boxes: tuple[tuple[int, int, int, int], ...] = ()

    @property
    def word(self) -> str:
        """The noun as used in captions (singular or plural)."""
        return self.kind if self.count == 1 else OBJECTS[self.kind][0]

    def phrase(self) -> str:
        """Caption phrase, e.g. ``"two blue cups at the bottom"``."""
        det = "a" if self.count == 1 else NUMBER_WORDS[self.count]
        return f"{det} {self.color} {self.word} {POSITION_PHRASE[self.position]}"


@dataclasses.dataclass(frozen=True)
class Scene:
    """A generated scene: its objects, background and the drawn image.

    Attributes:
        split: Split name.
        seed: Split seed.
        index: Scene index within the split (0-based).
        objects: Objects in canonical (position) order.
        background: Background colour name.
        texture: Background texture name.
        image: The rendered ``PIL.Image`` (RGB, ``IMAGE_SIZE`` square).
    """

    split: str
    seed: int
    index: int
    objects: tuple[SceneObject, ...]
    background: str
    texture: str
    image: Image.Image

    @property
    def kinds(self) -> list[str]:
        """Object kinds present, in caption order."""
        return [o.kind for o in self.objects]

    def get(self, kind: str) -> SceneObject | None:
        """The object of a kind, or ``None`` if absent."""
        return next((o for o in self.objects if o.kind == kind), None)

    def caption(self, order: list[int] | None = None) -> str:
        """Caption such as ``"a red apple on the left and two blue cups at the bottom."``.

        Args:
            order: Optional permutation of object indices; canonical order by default.
        """
        objs = [self.objects[i] for i in order] if order is not None else list(self.objects)
        phrases = [o.phrase() for o in objs]
        if len(phrases) == 1:
            body = phrases[0]
        else:
            body = ", ".join(phrases[:-1]) + " and " + phrases[-1]
        return body + "."

    def prior_partners_absent(self) -> list[str]:
        """Partners of present objects that are absent: what the co-occurrence prior suggests."""
        present = set(self.kinds)
        out = []
        for k in self.kinds:
            p = OBJECTS[k][2]
            if p not in present and p not in out:
                out.append(p)
        return out
