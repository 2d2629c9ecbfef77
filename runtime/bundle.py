"""A bundle: a directory with ``segrt.json`` and the ONNX/engine artifacts it names."""
from __future__ import annotations

import json
import os
from pathlib import Path

from segrt.errors import BundleError, ManifestError
from segrt.runtime.fsutil import atomic_path, sha256_file, write_json_atomic
from segrt.runtime.manifest import Artifact, Manifest

MANIFEST_NAME = "segrt.json"


def onnx_filename(precision: str) -> str:
    """``model.onnx`` for FP32, ``model.<precision>.onnx`` otherwise."""
    return "model.onnx" if precision == "fp32" else f"model.{precision}.onnx"


class Bundle:
    """A bundle on disk. Cheap to open; the manifest is validated once, here."""

    def __init__(self, path: str | os.PathLike[str], manifest: Manifest) -> None:
        self.path = Path(path)
        self.manifest = manifest

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> "Bundle":
        p = Path(path)
        if p.is_file() and p.name == MANIFEST_NAME:
            p = p.parent
        mpath = p / MANIFEST_NAME
        if not p.is_dir():
            raise BundleError(f"bundle {p} does not exist",
                              hint="create one with: segrt export MODEL -o " + str(p))
        if not mpath.is_file():
            raise BundleError(f"{p} is not a bundle: no {MANIFEST_NAME}",
                              hint="create one with: segrt export MODEL -o " + str(p))
        try:
            data = json.loads(mpath.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ManifestError(f"{mpath}: unreadable manifest ({exc})",
                                hint="re-export the bundle") from exc
        try:
            manifest = Manifest.from_dict(data)
        except ManifestError as exc:
            raise ManifestError(f"{mpath}: {exc.message}", hint=exc.hint or "re-export the bundle") from exc
        return cls(p, manifest)

    @classmethod
    def create(cls, path: str | os.PathLike[str], manifest: Manifest) -> "Bundle":
        b = cls(path, manifest)
        b.save()
        return b

    def save(self) -> None:
        """Write the manifest atomically."""
        write_json_atomic(self.path / MANIFEST_NAME, self.manifest.to_dict())

    def update(self, manifest: Manifest) -> None:
        self.manifest = manifest
        self.save()

    # -- artifacts -----------------------------------------------------------------
    def artifact(self, precision: str) -> Artifact:
        art = self.manifest.artifacts.get(precision)
        if art is None:
            have = ", ".join(sorted(self.manifest.artifacts)) or "none"
            fix = ("re-export it with: segrt export" if precision == "fp32"
                   else f"make it with: segrt quantize {self.path} --precision {precision}")
            raise BundleError(f"bundle {self.path} has no {precision} model (has: {have})", hint=fix)
        return art

    def onnx_path(self, precision: str = "fp32", *, verify: bool = False) -> Path:
        art = self.artifact(precision)
        p = self.path / art.path
        if not p.is_file():
            raise BundleError(f"{p} is missing from the bundle", hint="re-export the bundle")
        if verify and sha256_file(p) != art.sha256:
            raise BundleError(f"{p} does not match its checksum in {MANIFEST_NAME}",
                              hint="the file was modified or truncated; re-export the bundle")
        return p

    def register_onnx(self, precision: str, path: Path, **fields) -> Artifact:
        """Record an ONNX already written into the bundle, with its checksum, and save."""
        rel = os.path.relpath(path, self.path)
        art = Artifact(precision=precision, path=rel, sha256=sha256_file(path), **fields)
        self.update(self.manifest.with_artifact(art))
        return art

    def save_onnx(self, precision: str, model, **fields) -> Artifact:
        """Write an ``onnx.ModelProto`` as this bundle's ``precision`` model (atomically) and register it."""
        import onnx  # a runtime dependency, but only writers need it

        target = self.path / onnx_filename(precision)
        with atomic_path(target) as tmp:
            onnx.save(model, str(tmp))
        return self.register_onnx(precision, target, **fields)

    def __repr__(self) -> str:
        return f"Bundle({str(self.path)!r}, name={self.manifest.name!r})"
