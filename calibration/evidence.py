"""Is there enough evidence on the held-out frames for an accuracy gate to mean anything?

An agreement of 99.6 % on one frame, or on a scene where FP32 predicts a single class,
says nothing about the model on your scenes. Before a gate may pass, the held-out set
must hold:

* at least :data:`MIN_EVAL_FRAMES` distinct frames (after the sampler's near-duplicate
  removal: 60 copies of one image are one frame), and
* at least :data:`MIN_EVIDENCE_CLASSES` classes that the FP32 reference predicts on at
  least :data:`MIN_CLASS_PIXELS` pixels each (model-input pixels over all frames), so
  that a change between classes can show up at all.

Below either, the gate refuses to pass (``--allow-small-eval`` accepts it explicitly).
Separately, when FP32 predicts one class on at least :data:`DOMINANT_SHARE` of the
pixels (typical of a random-weight model), a model that always answered that class
would agree that well too: the report says agreement is meaningless there.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

MIN_EVAL_FRAMES = 10
MIN_CLASS_PIXELS = 1000
MIN_EVIDENCE_CLASSES = 2
DOMINANT_SHARE = 0.98


@dataclass(frozen=True)
class Evidence:
    """What the held-out frames contain: distinct frames and FP32 reference pixels per class."""

    frames: int
    classes: tuple[str, ...]
    class_pixels: tuple[int, ...]  # FP32 reference pixels per class, all frames together

    @property
    def pixels(self) -> int:
        return int(sum(self.class_pixels))

    @property
    def classes_with_evidence(self) -> tuple[str, ...]:
        return tuple(c for c, n in zip(self.classes, self.class_pixels) if n >= MIN_CLASS_PIXELS)

    @property
    def dominant(self) -> tuple[str, float]:
        """The class FP32 predicts most, and its share of the pixels."""
        if not self.pixels:
            return "", 0.0
        i = int(np.argmax(self.class_pixels))
        return self.classes[i], self.class_pixels[i] / self.pixels

    @property
    def agreement_meaningful(self) -> bool:
        return self.dominant[1] < DOMINANT_SHARE

    def shortfalls(self) -> list[str]:
        """Why the evidence is too small for a gate (empty when it is enough)."""
        out = []
        if self.frames < MIN_EVAL_FRAMES:
            out.append(f"{self.frames} distinct evaluation frame{'s' * (self.frames != 1)} "
                       f"(minimum {MIN_EVAL_FRAMES})")
        strong = self.classes_with_evidence
        if len(strong) < MIN_EVIDENCE_CLASSES:
            out.append(f"{len(strong)} class{'es' * (len(strong) != 1)} with >= {MIN_CLASS_PIXELS} FP32 pixels "
                       f"(minimum {MIN_EVIDENCE_CLASSES})")
        return out

    @property
    def sufficient(self) -> bool:
        return not self.shortfalls()

    def meaningless_clause(self) -> str | None:
        """``FP32 predicts 'x' on 99.1% ...: pixel agreement is meaningless here``, or None."""
        if self.agreement_meaningful:
            return None
        name, share = self.dominant
        return (f"FP32 predicts '{name}' on {100 * share:.1f}% of the evaluated pixels, so pixel agreement is "
                "meaningless here")

    def meaningless_note(self) -> str | None:
        """One sentence when pixel agreement cannot tell a good model from a constant one."""
        clause = self.meaningless_clause()
        if clause is None:
            return None
        name, share = self.dominant
        return (f"{clause} (answering '{name}' everywhere would score {100 * share:.1f}%); "
                "a random-weight model? evaluate a trained model on your scenes")

    def to_dict(self) -> dict[str, Any]:
        name, share = self.dominant
        return {"distinct_frames": self.frames, "pixels": self.pixels,
                "class_pixels": {c: int(n) for c, n in zip(self.classes, self.class_pixels)},
                "dominant_class": name, "dominant_share": share,
                "agreement_meaningful": self.agreement_meaningful, "shortfalls": self.shortfalls(),
                "minimum": {"frames": MIN_EVAL_FRAMES, "class_pixels": MIN_CLASS_PIXELS,
                            "classes": MIN_EVIDENCE_CLASSES}}


def evidence_from_masks(ref_masks: Sequence[np.ndarray], classes: Sequence[str]) -> Evidence:
    """The evidence in FP32 reference masks (one per distinct held-out frame); ids outside
    the classes are not counted."""
    n = len(classes)
    counts = np.zeros(n, np.int64)
    for m in ref_masks:
        counts += np.bincount(m.reshape(-1), minlength=n)[:n]
    return Evidence(len(ref_masks), tuple(str(c) for c in classes), tuple(int(c) for c in counts))
