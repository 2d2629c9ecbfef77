"""What ``segrt doctor`` says about OpenCV: GStreamer, and the numpy its ``cv2`` was built for.

JetPack's OpenCV (the one with GStreamer, needed by ``csi://``) is compiled for numpy 1.x.
A numpy 2 installed next to it (pip pulls one in unless told ``'numpy<2'``) makes
``import cv2`` fail with "numpy.core.multiarray failed to import" / "_ARRAY_API not found".

There is no API that returns the numpy ABI of a compiled module. The best detectable
approximation, used here: the ``numpy: … (ver X)`` line of ``cv2.getBuildInformation()``
(the numpy headers cv2 was compiled against) compared with numpy's ABI rules, plus the
fact that ``cv2`` imported and round-tripped an array through numpy at all.

* built against numpy >= 2: the ABI also serves numpy 1.x at run time (NumPy 2's
  headers target 1.x by default), so any installed numpy matches;
* built against 1.x, numpy 2 installed: mismatch (the failure above);
* built against 1.x, older 1.x installed: mismatch (a C-API version error);
* built against 1.x, same or newer 1.x installed: match.
"""
from __future__ import annotations

import re
from typing import Any

from segrt.runtime.versions import version_tuple


def gstreamer_support(build_info: str) -> bool | None:
    """``GStreamer: YES`` in ``cv2.getBuildInformation()`` (pip's opencv-python says NO)."""
    m = re.search(r"^\s*GStreamer:\s*(\S+)", build_info, flags=re.M)
    if not m:
        return None
    return m.group(1).upper().startswith("YES")


def numpy_built_for(build_info: str) -> str | None:
    """The numpy version cv2 was compiled against, from its ``numpy: <include> (ver X)`` line."""
    m = re.search(r"^\s*numpy:\s*.*\(ver\s+([0-9][^)\s]*)\)", build_info, flags=re.M)
    return m.group(1) if m else None


def numpy_abi_match(built: str | None, installed: str) -> tuple[bool | None, str]:
    """(matches, one-line explanation) for cv2 built against ``built`` running on ``installed``."""
    if not built:
        return None, "cv2's build information names no numpy version; cannot tell"
    b, i = version_tuple(built), version_tuple(installed)
    if not b or not i:
        return None, f"unreadable versions (built {built!r}, installed {installed!r})"
    if b[0] >= 2:
        return True, f"built against numpy {built}, whose ABI also serves numpy 1.x; {installed} installed"
    if i[0] >= 2:
        return False, (f"cv2 was built for numpy {built} (1.x) but numpy {installed} is installed: "
                       "pip install 'numpy<2' in this venv")
    if i[:2] < b[:2]:
        return False, f"cv2 was built for numpy {built}, newer than the installed {installed}: upgrade numpy within 1.x"
    return True, f"built against numpy {built}, {installed} installed (same ABI line)"


def opencv_report() -> dict[str, Any]:
    """OpenCV facts; an import failure (numpy ABI, missing package) is reported, never raised."""
    import numpy as np

    rep: dict[str, Any] = {"version": None, "path": None, "gstreamer": None, "numpy_built": None,
                           "numpy_installed": np.__version__, "numpy_match": None, "numpy_note": ""}
    try:
        import cv2
    except ImportError as exc:
        rep["error"] = f"import cv2 failed: {exc}".splitlines()[0]
        rep["numpy_note"] = ("cv2 does not import; if the message names numpy/_ARRAY_API, cv2 was built for "
                             "numpy 1.x: pip install 'numpy<2'")
        return rep
    info = cv2.getBuildInformation()
    rep.update(version=cv2.__version__, path=getattr(cv2, "__file__", None), gstreamer=gstreamer_support(info),
               numpy_built=numpy_built_for(info))
    rep["numpy_match"], rep["numpy_note"] = numpy_abi_match(rep["numpy_built"], np.__version__)
    probe = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    if not np.array_equal(cv2.flip(cv2.flip(probe, 0), 0), probe):  # a live round trip through the ABI
        rep["numpy_match"] = False
        rep["numpy_note"] = "cv2 returned a wrong array from a numpy round trip"
    return rep
