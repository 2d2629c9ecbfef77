"""Frame sinks by URI: ``display://``, ``http://:PORT`` (a browser view; :mod:`.http` needs aiohttp), a video file, a folder of images, an image file, ``null://``.

``open_sink(uri, fps, size)`` returns an unopened :class:`Sink` (a bad URI fails here);
``open()`` makes it ready, ``write(image)`` takes a BGR uint8 image, ``close()`` finalises.
One module per kind; :mod:`.base` holds what they share, :mod:`.uri` picks one from a URI.
"""
from segrt.runtime.sinks.base import Sink
from segrt.runtime.sinks.display import DisplaySink, opencv_has_gui
from segrt.runtime.sinks.images import IMAGE_EXTS, ImageFileSink, ImageFolderSink
from segrt.runtime.sinks.null import NullSink
from segrt.runtime.sinks.tee import TeeSink
from segrt.runtime.sinks.uri import URI_HELP, open_sink
from segrt.runtime.sinks.video import VIDEO_FOURCC, VideoSink

__all__ = ["Sink", "NullSink", "DisplaySink", "opencv_has_gui", "VideoSink", "VIDEO_FOURCC",
           "ImageFolderSink", "ImageFileSink", "IMAGE_EXTS", "open_sink", "URI_HELP", "TeeSink"]
