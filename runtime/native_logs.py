"""How loud the native libraries under the runtime may be: silent by default, heard with ``-v``.

A damaged video makes FFmpeg print one ``[msmpeg4 @ 0x...]`` line per damaged block
(hundreds per file), and OpenCV prints ``[ WARN ]`` lines before segrt's own one-line
error. segrt detects and reports what matters itself (corrupt frames, unopenable
sources), so by default both are silenced; ``segrt -v`` leaves the libraries at their
own defaults, which print FFmpeg errors and OpenCV warnings to stderr.

FFmpeg's level is read from ``OPENCV_FFMPEG_LOGLEVEL`` when OpenCV first opens a capture,
so :func:`configure_native_logs` must run before that (the CLI calls it right after
parsing its arguments, before any verb imports cv2). A variable the user has set is
kept. Note: giving ``OPENCV_FFMPEG_LOGLEVEL`` a level above quiet makes OpenCV print
FFmpeg's messages to *stdout*, which is why ``-v`` leaves the variable unset instead.
"""
from __future__ import annotations

import os
import sys

FFMPEG_QUIET = "-8"  # AV_LOG_QUIET
OPENCV_QUIET = "SILENT"
_SET_BY_US: dict[str, str] = {}
_CV_LOG_SILENT, _CV_LOG_WARNING = 0, 3  # cv::utils::logging::LogLevel


def configure_native_logs(verbose: bool) -> None:
    """Silence (``verbose=False``) or restore (``True``) FFmpeg and OpenCV logging."""
    wanted = {} if verbose else {"OPENCV_FFMPEG_LOGLEVEL": FFMPEG_QUIET, "OPENCV_LOG_LEVEL": OPENCV_QUIET}
    for name in ("OPENCV_FFMPEG_LOGLEVEL", "OPENCV_LOG_LEVEL"):
        ours = _SET_BY_US.pop(name, None)
        if ours is not None and os.environ.get(name) == ours:
            del os.environ[name]  # undo our own earlier setting, never the user's
        if name in wanted and name not in os.environ:
            os.environ[name] = _SET_BY_US[name] = wanted[name]
    cv2 = sys.modules.get("cv2")
    if cv2 is not None:  # already imported: its log level is set directly (FFmpeg's waits for the next open)
        logging_api = getattr(getattr(cv2, "utils", None), "logging", None)
        if logging_api is not None:
            logging_api.setLogLevel(logging_api.LOG_LEVEL_WARNING if verbose else logging_api.LOG_LEVEL_SILENT)
        else:  # OpenCV 4.x wheels (4.10 = the old-library CI venv) have only cv2.setLogLevel
            cv2.setLogLevel(_CV_LOG_WARNING if verbose else _CV_LOG_SILENT)
