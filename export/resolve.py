"""Which model the user means: a zoo name, ``package.module:factory`` (or ``file.py:factory``), or an ``.onnx``.

:func:`resolve_model` turns the string into a :class:`ModelTarget`; :func:`build_factory_model`
calls a user factory. Both fail with one line naming the module, file or name.
"""
from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from segrt.errors import ConfigError, ModelNotFoundError, first_line
from segrt.export.zoo import ZooEntry, get_entry
from segrt.runtime.fsutil import sha256_file


@dataclass(frozen=True)
class ModelTarget:
    """A resolved model: ``kind`` is ``zoo``, ``factory`` or ``onnx``; ``source`` goes into the manifest."""

    kind: str
    label: str
    entry: ZooEntry | None = None
    factory: Any = None
    onnx_path: Path | None = None
    source: Mapping[str, Any] = field(default_factory=dict)


def load_factory(spec: str) -> ModelTarget:
    """``package.module:factory`` or ``path/file.py:factory`` -> a target holding the callable."""
    mod_name, _, attr = spec.rpartition(":")
    if not mod_name or not attr:
        raise ModelNotFoundError(f"{spec!r} is not package.module:factory", hint="e.g. mypkg.nets:build_model")
    try:
        if mod_name.endswith(".py"):
            path = Path(mod_name)
            if not path.is_file():
                raise ModelNotFoundError(f"model file {path} does not exist", hint="check the path before ':'")
            mspec = importlib.util.spec_from_file_location(f"segrt_user_{path.stem}", path)
            module = importlib.util.module_from_spec(mspec)  # type: ignore[arg-type]
            mspec.loader.exec_module(module)  # type: ignore[union-attr]
        else:
            module = importlib.import_module(mod_name)
    except ModelNotFoundError:
        raise
    except ImportError as exc:
        raise ModelNotFoundError(f"cannot import {mod_name} ({exc})",
                                 hint="install the package or add its folder to PYTHONPATH") from exc
    except Exception as exc:  # noqa: BLE001 - user code may raise anything while importing
        raise ModelNotFoundError(f"importing {mod_name} failed: {type(exc).__name__}: {first_line(exc)}",
                                 hint="fix the error in that module") from exc
    fn = getattr(module, attr, None)
    if fn is None or not callable(fn):
        names = [n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n))]
        close = difflib.get_close_matches(attr, names, n=3, cutoff=0.5)
        hint = f"did you mean {' or '.join(close)}?" if close else f"{mod_name} defines: {', '.join(names[:8])}"
        raise ModelNotFoundError(f"{mod_name} has no callable {attr!r}", hint=hint)
    # A file names the model (my_net.py:build -> "my_net"); a package's factory names itself.
    label = Path(mod_name).stem if mod_name.endswith(".py") else attr
    return ModelTarget(kind="factory", label=label, factory=fn, source={"kind": "factory", "factory": spec})


def resolve_model(model: str) -> ModelTarget:
    """The user's model string -> a :class:`ModelTarget` (nothing is built yet)."""
    model = str(model)
    if model.lower().endswith(".onnx"):
        p = Path(model)
        if not p.is_file():
            raise ModelNotFoundError(f"ONNX file {p} does not exist", hint="check the path")
        return ModelTarget(kind="onnx", label=p.stem, onnx_path=p,
                           source={"kind": "onnx", "path": str(p.resolve()), "sha256": sha256_file(p)})
    if ":" in model and not re.match(r"^[A-Za-z]:[\\/]", model):
        return load_factory(model)
    entry = get_entry(model)
    source = {"kind": "zoo", "model": entry.name, "origin": entry.source, "params": dict(entry.params)}
    if entry.provenance:
        source["provenance"] = dict(entry.provenance)
    return ModelTarget(kind="zoo", label=entry.name, entry=entry, source=source)


def build_factory_model(fn, num_classes: int | None):
    """Call a user factory (passing ``num_classes`` when asked) and check it returned an ``nn.Module``."""
    import torch

    kwargs = {}
    if num_classes is not None:
        try:
            params = inspect.signature(fn).parameters
        except (TypeError, ValueError):
            params = {}
        if "num_classes" in params or any(p.kind == p.VAR_KEYWORD for p in params.values()):
            kwargs["num_classes"] = num_classes
        else:
            raise ConfigError(f"factory {fn.__name__} takes no num_classes argument",
                              hint="drop --num-classes, or add a num_classes parameter to the factory")
    try:
        model = fn(**kwargs)
    except Exception as exc:  # noqa: BLE001 - user code
        raise ModelNotFoundError(f"factory {fn.__name__} raised {type(exc).__name__}: {first_line(exc)}",
                                 hint="fix the factory or its arguments") from exc
    if not isinstance(model, torch.nn.Module):
        raise ModelNotFoundError(f"factory {fn.__name__} returned {type(model).__name__}, not a torch.nn.Module",
                                 hint="return the model instance from the factory")
    return model.eval()


def is_maskrcnn(model) -> bool:
    """Whether ``model`` is torchvision's Mask R-CNN (the instances family)."""
    try:
        from torchvision.models.detection import MaskRCNN
    except ImportError:
        return False
    return isinstance(model, MaskRCNN)
