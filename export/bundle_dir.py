"""The output folder of an export: checked before any work, filled atomically after it.

:func:`prepare_out_dir` refuses a folder that is a file, holds something other than a bundle,
or a bundle from a newer segrt. :func:`install_bundle` moves the verified ONNX in and writes
the manifest last, so a failure never leaves a manifest pointing at a half-made artifact.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import time
from pathlib import Path

from segrt.errors import BundleError, ManifestError
from segrt.runtime.bundle import MANIFEST_NAME, Bundle, onnx_filename
from segrt.runtime.fsutil import ensure_writable_dir, sha256_file
from segrt.runtime.manifest import Artifact, Manifest

STALE_EXPORT_SECONDS = 3600  # a killed export's temp folder older than this is removed


def prepare_out_dir(out_dir: Path) -> bool:
    """Check ``out_dir`` can receive a bundle; return whether it was created here."""
    if out_dir.exists() and not out_dir.is_dir():
        raise BundleError(f"output {out_dir} is a file, not a folder", hint="pass -o with a folder path")
    created = not out_dir.exists()
    if out_dir.is_dir():
        visible = [p for p in out_dir.iterdir() if not p.name.startswith(".")]
        if visible and not (out_dir / MANIFEST_NAME).is_file():
            raise BundleError(f"output folder {out_dir} is not empty and is not a bundle",
                              hint="pass -o with a new or empty folder, or an existing bundle to replace")
        if (out_dir / MANIFEST_NAME).is_file():
            try:
                Bundle.open(out_dir)
            except ManifestError as exc:
                # Never overwrite a bundle a newer segrt made; an unreadable one may be replaced.
                if "newer" in exc.message:
                    raise BundleError(f"{out_dir} holds a bundle from a newer segrt ({exc.message})",
                                      hint="upgrade segrt, or pass -o with another folder") from exc
        for stale in out_dir.glob(".segrt-export-*"):
            # Left by a killed export (never trusted); an hour old so a concurrent export is spared.
            with contextlib.suppress(OSError):
                if time.time() - stale.stat().st_mtime > STALE_EXPORT_SECONDS:
                    shutil.rmtree(stale, ignore_errors=True)
    ensure_writable_dir(out_dir)
    return created


def install_bundle(out_dir: Path, tmp_onnx: Path, manifest: Manifest) -> Bundle:
    """Move the verified ONNX into ``out_dir`` and write the manifest last."""
    old_manifest = out_dir / MANIFEST_NAME
    stale: list[Path] = []
    if old_manifest.is_file():
        with contextlib.suppress(Exception):
            old = Bundle.open(out_dir).manifest
            stale = [out_dir / a.path for a in old.artifacts.values()] + [out_dir / e.path for e in old.engines]
        # From here until the new manifest is written there is no manifest: never a stale one.
        old_manifest.unlink()
    for p in stale:
        if p.name != onnx_filename("fp32"):
            with contextlib.suppress(OSError):
                p.unlink()
    target = out_dir / onnx_filename("fp32")
    os.replace(tmp_onnx, target)
    art = Artifact(precision="fp32", path=target.name, sha256=sha256_file(target),
                   details={"size_bytes": target.stat().st_size})
    return Bundle.create(out_dir, manifest.with_artifact(art))
