"""Frame sources by URI: files, image folders (optionally with label masks), cameras, streams, synthetic.

``open_source(uri)`` parses the URI (jetson-inference's convention) and returns an
unopened :class:`Source`; a bad URI or a missing file fails here with a one-line
:class:`~segrt.errors.SourceError`. Opening happens on ``open()``, on ``with``, or
lazily on the first ``read()``/property access.

Two delivery disciplines:

* file-like sources (video file, image, folder, ``synthetic://``) deliver every frame,
  in order, and support ``seek(index)`` for random access (calibration samples frames
  evenly across a source with it);
* live sources (V4L2, RTSP, CSI, GStreamer, ``synthetic://?live=1``) run a grabber
  thread that keeps only the newest frame: a slow consumer sees the latest frame and
  the skipped ones are counted in ``dropped_frames``. A live source that fails
  (unplugged, dropped stream) is reopened with exponential backoff, a bounded number of
  times; one whose content ends (``synthetic://?frames=N&live=1``) finishes there.

A video file served over http(s) (its path ends in a video extension) is a file source.

Frames are fresh arrays owned by the caller (sources never recycle a frame buffer).

The package has one module per kind, sharing :mod:`.base`: :mod:`.uri` (``open_source``),
:mod:`.video`, :mod:`.images`, :mod:`.synthetic`, :mod:`.live` (the latest-wins grabber)
and :mod:`.cameras` (V4L2, CSI, GStreamer and network streams through OpenCV).
"""
from __future__ import annotations

from segrt.runtime.sources.base import DEFAULT_IMAGE_FPS, MAX_CONSECUTIVE_BAD_FRAMES, Frame, Source
from segrt.runtime.sources.cameras import csi_pipeline, opencv_has_gstreamer
from segrt.runtime.sources.images import IMAGE_EXTS, ImageListSource, folder_source, read_label_mask
from segrt.runtime.sources.live import Capture, LiveSource
from segrt.runtime.sources.synthetic import PacedSyntheticCapture, SyntheticSource
from segrt.runtime.sources.uri import URI_HELP, open_source
from segrt.runtime.sources.video import VideoFileSource

__all__ = ["DEFAULT_IMAGE_FPS", "IMAGE_EXTS", "MAX_CONSECUTIVE_BAD_FRAMES", "URI_HELP", "Capture", "Frame",
           "ImageListSource", "LiveSource", "PacedSyntheticCapture", "Source", "SyntheticSource", "VideoFileSource",
           "csi_pipeline", "folder_source", "open_source", "opencv_has_gstreamer", "read_label_mask"]
