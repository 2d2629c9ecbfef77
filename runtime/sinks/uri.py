"""``open_sink(uri)``: the sink for a URI or path (unopened; a bad URI fails here)."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Sequence

from segrt.errors import SinkError
from segrt.runtime.sinks.base import Sink
from segrt.runtime.sinks.display import DisplaySink
from segrt.runtime.sinks.images import IMAGE_EXTS, ImageFileSink, ImageFolderSink
from segrt.runtime.sinks.null import NullSink
from segrt.runtime.sinks.tee import TeeSink
from segrt.runtime.sinks.video import VIDEO_FOURCC, VideoSink

URI_HELP = "display://, http://:PORT (a live view in a browser), rtp://HOST:PORT, rtsp://@:8554/name, a video file (.mp4 .avi .mkv .mov), a folder (out/ or folder://out), an image file, null://"


def open_sink(uri: str | os.PathLike[str] | Sink | Sequence[str | os.PathLike[str] | Sink] | None, fps: float = 30.0,
              size: tuple[int, int] | None = None, *, overwrite: bool = False, listen: str | None = None) -> Sink:
    """The sink for ``uri`` (unopened). ``fps`` is used by video sinks; ``size`` is informative
    (video writers take the size of the first frame). An existing video file is refused
    unless ``overwrite``."""
    if isinstance(uri, Sink):
        return uri
    if isinstance(uri, (list, tuple)):  # several sinks side by side
        sinks = [open_sink(u, fps, size, overwrite=overwrite, listen=listen) for u in uri]
        return sinks[0] if len(sinks) == 1 else TeeSink(sinks)
    if uri is None:
        return NullSink("null://")
    uri = os.fspath(uri).strip()
    if not uri:
        raise SinkError("empty sink URI", hint="pass " + URI_HELP)
    m = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://(.*)$", uri, re.S)
    if m:
        scheme, rest = m.group(1).lower(), m.group(2)
        if scheme == "null":
            return NullSink(uri)
        if scheme == "http":
            from segrt.runtime.sinks.http import HttpSink
            return HttpSink(uri, listen=listen)
        if scheme == "rtp":
            from segrt.runtime.sinks.network import RtpSink
            return RtpSink(uri, fps)
        if scheme == "rtsp":
            from segrt.runtime.sinks.network import RtspSink
            return RtspSink(uri, fps)
        if scheme == "display":
            return DisplaySink(uri, title=rest or "segrt")
        if scheme == "folder":
            path, _, query = rest.partition("?")
            ext = dict(p.split("=", 1) for p in query.split("&") if "=" in p).get("ext", "png")
            return ImageFolderSink(path, ext)
        if scheme == "file":
            return open_sink(rest, fps, size, overwrite=overwrite)
        raise SinkError(f"unknown sink scheme {scheme}:// in {uri!r}", hint="pass " + URI_HELP)
    path = Path(uri).expanduser()
    ext = path.suffix.lower()
    if ext in VIDEO_FOURCC:
        return VideoSink(path, fps, overwrite=overwrite)
    if ext in IMAGE_EXTS:
        if "%" in path.name:  # printf-style sequence: out/frame_%05d.png
            return ImageFolderSink(path.parent, ext, pattern=path.name)
        return ImageFileSink(path)
    if uri.endswith(("/", os.sep)) or path.is_dir() or not ext:
        return ImageFolderSink(path)
    raise SinkError(f"cannot tell what sink {uri!r} is (extension {ext!r})", hint="pass " + URI_HELP)
