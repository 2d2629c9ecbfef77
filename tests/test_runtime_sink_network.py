"""rtp:// and rtsp:// outputs: the GStreamer pipelines as strings, URI parsing, and the one clear
line when this OpenCV has no GStreamer."""
from __future__ import annotations

import numpy as np
import pytest

from segrt.errors import SinkError
from segrt.runtime.sinks import open_sink
from segrt.runtime.sinks.network import (RtpSink, RtspSink, h264_encoder, rtp_address_from_uri, rtp_pipeline,
                                         rtsp_factory_launch, rtsp_mount_from_uri)
from segrt.runtime.sources import opencv_has_gstreamer


def test_rtp_pipeline_with_x264_sends_rtp_h264_to_the_host():
    p = rtp_pipeline("10.0.0.5", 5000, fps=25, bitrate_kbps=2500, hardware=False)
    assert p.startswith("appsrc ")
    assert "x264enc tune=zerolatency speed-preset=ultrafast bitrate=2500 key-int-max=25" in p
    assert "nvv4l2h264enc" not in p
    assert p.endswith("rtph264pay config-interval=1 pt=96 ! udpsink host=10.0.0.5 port=5000 sync=false async=false")
    elements = [e.strip().split()[0] for e in p.split(" ! ")]
    assert elements == ["appsrc", "videoconvert", "video/x-raw,format=I420", "x264enc", "video/x-h264,profile=baseline",
                        "h264parse", "rtph264pay", "udpsink"]


def test_rtp_pipeline_on_jetson_uses_the_hardware_encoder_in_nvmm():
    p = rtp_pipeline("10.0.0.5", 5000, fps=30, bitrate_kbps=4000, hardware=True)
    assert "nvvidconv ! video/x-raw(memory:NVMM),format=NV12 ! nvv4l2h264enc bitrate=4000000" in p
    assert "insert-sps-pps=true" in p and "idrinterval=30" in p and "x264enc" not in p
    assert h264_encoder(True, 1000, 15).endswith("h264parse")


def test_rtsp_server_factory_repacks_the_loopback_feed():
    launch = rtsp_factory_launch(5400)
    assert launch.startswith("( udpsrc port=5400 caps=\"application/x-rtp,media=video")
    assert "encoding-name=H264" in launch and "rtph264pay name=pay0 pt=96" in launch and launch.endswith(")")


def test_uri_parsing():
    assert rtp_address_from_uri("rtp://192.168.1.20:5000") == ("192.168.1.20", 5000)
    with pytest.raises(SinkError, match="host and a port"):
        rtp_address_from_uri("rtp://192.168.1.20")
    assert rtsp_mount_from_uri("rtsp://@:8554/cam") == (8554, "/cam")
    assert rtsp_mount_from_uri("rtsp://@:9000") == (9000, "/segrt")
    assert isinstance(open_sink("rtp://127.0.0.1:5000"), RtpSink)
    rtsp = open_sink("rtsp://@:8554/front")
    assert isinstance(rtsp, RtspSink) and rtsp.describe() == "rtsp://<this machine>:8554/front"


@pytest.mark.skipif(opencv_has_gstreamer(), reason="this OpenCV has GStreamer")
@pytest.mark.parametrize("uri", ["rtp://127.0.0.1:5000", "rtsp://@:8554/x"])
def test_without_gstreamer_one_clear_line(uri):
    sink = open_sink(uri)
    with pytest.raises(SinkError) as err:
        sink.write(np.zeros((32, 32, 3), np.uint8))
    msg = str(err.value)
    assert "needs OpenCV built with GStreamer" in msg and "\n" not in msg.strip()
