"""``open_source(uri)``: which source a URI names (jetson-inference's convention)."""
from __future__ import annotations

import glob
import os
import re
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import cv2

from segrt.errors import SourceError
from segrt.runtime.sources.base import Source, float_param, int_param
from segrt.runtime.sources.cameras import csi_pipeline, cv_opener, require_gstreamer, v4l2_source
from segrt.runtime.sources.datasets import DATASET_SCHEMES, dataset_source
from segrt.runtime.sources.images import IMAGE_EXTS, ImageListSource, folder_source, is_image
from segrt.runtime.sources.live import LiveSource
from segrt.runtime.sources.synthetic import PacedSyntheticCapture, SyntheticSource, synthetic_config_from_uri
from segrt.runtime.sources.video import VideoFileSource

# A URL whose path ends in one of these names a video file (finite, every frame), not a live stream.
VIDEO_FILE_EXTS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".wmv", ".flv", ".ogv",
                   ".3gp")
URI_HELP = ("a video file, an image, a folder or glob of images, 0 or /dev/videoN or v4l2:///dev/videoN, "
            "rtsp://..., csi://N, gst://<pipeline>, synthetic://?size=WxH&fps=F&frames=N, "
            "voc://ROOT?split=val, cityscapes://ROOT?split=val, ade20k://ROOT?split=validation")


def open_source(uri: str | int | os.PathLike[str] | Source) -> Source:
    """The source for ``uri`` (unopened). Raises SourceError for a bad URI or a missing file/device."""
    if isinstance(uri, Source):
        return uri
    if isinstance(uri, int) and not isinstance(uri, bool):
        return v4l2_source(str(uri), f"/dev/video{uri}", {})
    if isinstance(uri, os.PathLike):
        uri = os.fspath(uri)
    if not isinstance(uri, str) or not uri.strip():
        raise SourceError(f"empty or invalid source {uri!r}", hint="pass " + URI_HELP)
    uri = uri.strip()
    if re.fullmatch(r"\d+", uri):
        return v4l2_source(uri, f"/dev/video{uri}", {})
    if re.fullmatch(r"/dev/video\d+", uri):
        return v4l2_source(uri, uri, {})

    m = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://(.*)$", uri, re.S)
    if m:
        scheme, rest = m.group(1).lower(), m.group(2)
        if scheme == "synthetic":
            query = rest.split("?", 1)[1] if "?" in rest else rest if "=" in rest else ""
            pairs = parse_qsl(query, keep_blank_values=True)
            q = dict(pairs)
            live = q.get("live", "0").lower() in ("1", "true", "yes")
            reconnects = int_param(q, "reconnect", 5, uri)
            inner = "&".join(f"{k}={v}" for k, v in pairs if k not in ("live", "reconnect"))
            if not live:
                return SyntheticSource(uri, inner)
            config = synthetic_config_from_uri(uri, inner)
            return LiveSource(uri, lambda: PacedSyntheticCapture(config), reconnects=reconnects,
                              backoff_s=0.05)
        if scheme in DATASET_SCHEMES:
            return dataset_source(uri)
        if scheme == "v4l2":
            parts = urlsplit(uri)
            device = parts.path or "/dev/video0"
            if not re.fullmatch(r"/dev/video\d+", device):
                raise SourceError(f"{uri}: expected v4l2:///dev/videoN")
            return v4l2_source(uri, device, dict(parse_qsl(parts.query)))
        if scheme == "csi":
            require_gstreamer(uri)
            parts = urlsplit(uri)
            q = dict(parse_qsl(parts.query))
            sensor = parts.netloc or parts.path.strip("/") or "0"
            if not sensor.isdigit():
                raise SourceError(f"{uri}: expected csi://N with a sensor number")
            flip = int_param(q, "flip", 0, uri)
            if flip > 7:
                raise SourceError(f"{uri}: flip={flip} must be 0..7 (nvvidconv flip-method)")
            pipe = csi_pipeline(int(sensor), int_param(q, "width", 1280, uri, 1), int_param(q, "height", 720, uri, 1),
                                float_param(q, "fps", 30.0, uri), flip)
            return LiveSource(uri, cv_opener(uri, pipe, cv2.CAP_GSTREAMER), reconnects=int_param(q, "reconnect", 5, uri))
        if scheme == "gst":
            require_gstreamer(uri)
            if not rest.strip():
                raise SourceError(f"{uri}: empty GStreamer pipeline", hint="gst://videotestsrc ! videoconvert ! appsink")
            pipe = rest if "appsink" in rest else rest + " ! videoconvert ! video/x-raw, format=BGR ! appsink drop=true max-buffers=1"
            return LiveSource(uri, cv_opener(uri, pipe, cv2.CAP_GSTREAMER))
        if scheme in ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt"):
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 5000, cv2.CAP_PROP_READ_TIMEOUT_MSEC, 5000]
            if scheme in ("http", "https") and Path(urlsplit(uri).path).suffix.lower() in VIDEO_FILE_EXTS:
                return VideoFileSource(uri, open_params=params)  # a video file served over http: finite
            return LiveSource(uri, cv_opener(uri, uri, cv2.CAP_FFMPEG, [(cv2.CAP_PROP_BUFFERSIZE, 1)], params))
        if scheme == "file":
            return open_source(urlsplit(uri).path)
        raise SourceError(f"unknown source scheme {scheme}:// in {uri!r}", hint="pass " + URI_HELP)

    # A path: glob, folder, image or video.
    if any(ch in uri for ch in "*?[") and not os.path.exists(uri):
        files = sorted(Path(p) for p in glob.glob(uri, recursive=True))
        images = [p for p in files if p.is_file() and is_image(p)]
        if not images:
            raise SourceError(f"the pattern {uri!r} matches no images", hint="check the glob, e.g. 'frames/*.png'")
        return ImageListSource(uri, images)
    path = Path(uri).expanduser()
    if path.is_dir():
        return folder_source(path, uri)
    if path.is_file():
        if path.suffix.lower() in IMAGE_EXTS:
            return ImageListSource(uri, [path])
        return VideoFileSource(path)
    raise SourceError(f"source {uri!r}: no such file or folder", hint="pass " + URI_HELP)
