"""Load a checkpoint into a model: the usual wrappers, strict by default, one-line errors.

Accepted files: a bare ``state_dict``; a dict wrapping one under ``state_dict``, ``model``,
``model_state_dict``, ``net``, ``ema`` or ``weights`` (training scripts, Lightning, torchvision's
references); keys prefixed ``module.`` (DataParallel/DDP), ``_orig_mod.`` (torch.compile) or
``model.`` (Lightning) are unprefixed when that makes them match. Files are read with
``torch.load(weights_only=True)``: a pickled whole model is refused rather than executed.
Keys of a torchvision ``aux_classifier`` are skipped when the model has none (the auxiliary
head only helps training); everything else mismatching fails with the key names.
"""
from __future__ import annotations

import logging
import os
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from segrt.errors import WeightsError, first_line
from segrt.runtime.fsutil import sha256_file

log = logging.getLogger(__name__)

WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "ema", "weights", "params")
PREFIXES = ("module.", "_orig_mod.", "model.")
IGNORABLE_PREFIXES = ("aux_classifier.",)


@dataclass(frozen=True)
class WeightsInfo:
    """What was loaded, for the manifest's ``source``."""

    path: str
    sha256: str
    wrapper: str | None  # the dict key the state_dict was found under, if any
    stripped_prefix: str | None
    skipped_keys: tuple[str, ...]
    tensors: int

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "wrapper": self.wrapper,
                "stripped_prefix": self.stripped_prefix, "skipped_keys": list(self.skipped_keys),
                "tensors": self.tensors}


def _is_state_dict(obj: Any) -> bool:
    import torch

    return (isinstance(obj, Mapping) and len(obj) > 0
            and all(isinstance(k, str) for k in obj)
            and all(isinstance(v, torch.Tensor) for v in obj.values()))


def _looks_like_torch_save(p: Path) -> bool:
    """torch.save writes a zip (since 1.6) or, legacy, a pickle starting with the PROTO opcode."""
    try:
        if zipfile.is_zipfile(p):
            return True
        with open(p, "rb") as f:
            head = f.read(2)
    except OSError as exc:
        raise WeightsError(f"cannot read {p}: {exc.strerror or exc}", hint="check the file's permissions") from exc
    return len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def read_state_dict(path: str | os.PathLike[str]) -> tuple[dict[str, Any], str | None]:
    """The state_dict in ``path`` and the wrapper key it was under (None for a bare one)."""
    import torch

    p = Path(path)
    if p.suffix.lower() == ".tflite":
        return _tflite_state_dict(p), None
    if not p.is_file():
        raise WeightsError(f"weights file {p} does not exist", hint="check the --weights path")
    if not _looks_like_torch_save(p):
        raise WeightsError(f"{p} is not a PyTorch checkpoint (neither a torch.save zip nor a pickle)",
                           hint="pass a file written by torch.save(model.state_dict(), path)")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = first_line(exc)
        if "weights_only" in str(exc) or "Unsupported global" in str(exc):
            raise WeightsError(
                f"{p} holds pickled Python objects, not just tensors ({first})",
                hint="save model.state_dict() with torch.save and pass that file") from exc
        raise WeightsError(f"{p} is not a PyTorch checkpoint ({first})",
                           hint="pass a file written by torch.save(model.state_dict(), path)") from exc
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, AttributeError) as exc:
        raise WeightsError(f"{p} is not a readable PyTorch checkpoint ({first_line(exc)})",
                           hint="pass a file written by torch.save(model.state_dict(), path)") from exc
    if _is_state_dict(obj):
        return dict(obj), None
    if isinstance(obj, Mapping):
        for key in WRAPPER_KEYS:
            if _is_state_dict(obj.get(key)):
                return dict(obj[key]), key
        keys = ", ".join(sorted(str(k) for k in obj)[:8])
        raise WeightsError(f"{p} has no state_dict (top-level keys: {keys})",
                           hint=f"save the model's state_dict, or one under a key {'/'.join(WRAPPER_KEYS[:3])}")
    raise WeightsError(f"{p} holds a {type(obj).__name__}, not a state_dict",
                       hint="save model.state_dict() with torch.save and pass that file")


def _tflite_state_dict(p: Path) -> dict[str, Any]:
    """A MediaPipe selfie-segmentation ``.tflite`` (the pinned one is fetched on first use)."""
    from segrt.export.mediapipe_fetch import ensure_pinned_tflite, is_pinned_tflite
    from segrt.export.models.mediapipe_selfie import state_dict_from_tflite

    if is_pinned_tflite(p):
        ensure_pinned_tflite(p.name)
    elif not p.is_file():
        raise WeightsError(f"weights file {p} does not exist", hint="check the --weights path")
    return state_dict_from_tflite(p)


def _strip(sd: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in sd.items()}


def _best_prefix(sd: Mapping[str, Any], model_keys: set[str]) -> tuple[dict[str, Any], str | None]:
    """Strip the wrapper prefixes every key shares (``module._orig_mod.x`` too) if that matches better."""
    states = [(dict(sd), "")]
    current, stripped = dict(sd), ""
    for _ in range(4):
        prefix = next((p for p in PREFIXES if current and all(k.startswith(p) for k in current)), None)
        if prefix is None:
            break
        current, stripped = _strip(current, prefix), stripped + prefix
        states.append((current, stripped))
    best, best_prefix = max(states, key=lambda s: len(model_keys & set(s[0])))
    if len(model_keys & set(best)) == len(model_keys & set(sd)):
        return dict(sd), None
    return best, best_prefix or None


def load_weights(model, path: str | os.PathLike[str], *, strict: bool = True) -> WeightsInfo:
    """Load ``path`` into ``model`` in place; raise :class:`WeightsError` naming every mismatch."""
    p = Path(path)
    sd, wrapper = read_state_dict(p)
    target = model.state_dict()
    sd, prefix = _best_prefix(sd, set(target))
    skipped = tuple(sorted(k for k in sd if k not in target and k.startswith(IGNORABLE_PREFIXES)))
    for k in skipped:
        del sd[k]
    missing = sorted(k for k in target if k not in sd)
    unexpected = sorted(k for k in sd if k not in target)
    shapes = sorted(
        ((k, tuple(sd[k].shape), tuple(target[k].shape))
         for k in sd if k in target and tuple(sd[k].shape) != tuple(target[k].shape)),
        key=lambda s: (-len(s[1]), s[0]),  # weights before biases: the more telling line first
    )
    if shapes or (strict and (missing or unexpected)):
        raise WeightsError(_mismatch_message(p, missing, unexpected, shapes, len(target)),
                           hint=_mismatch_hint(shapes, missing, unexpected))
    model.load_state_dict(sd, strict=strict)
    if skipped:
        log.info("%s: skipped %d training-only keys (%s...)", p, len(skipped), skipped[0])
    return WeightsInfo(path=str(p), sha256=sha256_file(p), wrapper=wrapper, stripped_prefix=prefix,
                       skipped_keys=skipped, tensors=len(sd))


def _names(keys: list[str], limit: int = 3) -> str:
    more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def _mismatch_message(p: Path, missing: list[str], unexpected: list[str],
                      shapes: list[tuple[str, tuple, tuple]], total: int) -> str:
    parts = []
    if shapes:
        k, got, want = shapes[0]
        more = f" (+{len(shapes) - 1} more)" if len(shapes) > 1 else ""
        parts.append(f"{len(shapes)} shape mismatches: {k} is {list(got)} in the file, "
                     f"{list(want)} in the model{more}")
    if missing:
        parts.append(f"{len(missing)}/{total} model keys missing: {_names(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys: {_names(unexpected)}")
    return f"{p} does not match the model: " + "; ".join(parts)


def _mismatch_hint(shapes, missing, unexpected) -> str:
    # A classifier trained on another class count differs only in the head's first dimension.
    for _, got, want in shapes:
        if len(got) == len(want) and got[1:] == want[1:] and got[0] != want[0] and len(got) in (1, 4):
            return f"the checkpoint looks like a {got[0]}-class model: pass --num-classes {got[0]}"
    if missing and not unexpected:
        return "the file is for a smaller or different model; check the model name"
    return "check that the checkpoint was trained for this model name and --num-classes"
