"""Preprocess (stretch/letterbox, normalisation), mask decoding (argmax) and rendering, with real numbers."""
from __future__ import annotations

import tracemalloc

import cv2
import numpy as np
import pytest

from segrt.errors import ConfigError
from segrt.runtime.manifest import InputSpec, Manifest, OutputSpec, PreprocessSpec, default_palette
from segrt.runtime.postprocess import MaskDecoder, mask_from_outputs
from segrt.runtime.preprocess import Letterbox, Preprocessor, letterbox_for
from segrt.runtime.render import Renderer

CLASSES = ("background", "a", "b", "c", "d")


def manifest(h=48, w=64, *, fused=True, resize="stretch", order="RGB", kind=None, pad=0) -> Manifest:
    if fused:
        inp = InputSpec(name="frame", height=h, width=w)
        out = OutputSpec(kind=kind or "mask", names=("mask",), num_classes=len(CLASSES))
    else:
        inp = InputSpec(name="input", height=h, width=w, layout="NCHW", dtype="float32", fused=False)
        out = OutputSpec(kind=kind or "logits", names=("logits",), num_classes=len(CLASSES))
    return Manifest(name="t", classes=CLASSES, palette=default_palette(len(CLASSES)), input=inp,
                    preprocess=PreprocessSpec(resize=resize, mean=(10.0, 20.0, 30.0), std=(2.0, 4.0, 8.0),
                                              color_order=order, pad_value=pad),
                    output=out)


def frame(h=120, w=200, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# ------------------------------------------------------------------ preprocess
def test_fused_stretch_is_a_resize_into_a_reused_buffer():
    pre = Preprocessor(manifest())
    f = frame()
    t, lb = pre.pre(f)
    assert t.shape == (1, 48, 64, 3) and t.dtype == np.uint8
    np.testing.assert_array_equal(t[0], cv2.resize(f, (64, 48), interpolation=cv2.INTER_LINEAR))
    assert (lb.scale_x, lb.scale_y, lb.pad_x, lb.pad_y) == (64 / 200, 48 / 120, 0, 0)
    t2, _ = pre.pre(frame(seed=1))
    assert t2 is t  # the same preallocated array every call


def test_letterbox_pads_and_remembers_geometry():
    pre = Preprocessor(manifest(64, 64, resize="letterbox", pad=114))
    f = frame(100, 200)
    t, lb = pre.pre(f)
    assert lb.scale == pytest.approx(0.32) and lb.content_size == (64, 32)
    assert (lb.pad_x, lb.pad_y) == (0, 16) and lb.content == (0, 16, 64, 48)
    assert np.all(t[0, :16] == 114) and np.all(t[0, 48:] == 114)
    np.testing.assert_array_equal(t[0, 16:48], cv2.resize(f, (64, 32), interpolation=cv2.INTER_LINEAR))
    # Boxes map back to frame pixels through the same geometry.
    np.testing.assert_allclose(lb.boxes_to_frame(np.array([[0, 16, 32, 32]])), [[0, 0, 100, 50]])
    # A frame of another size gets its own geometry, and the border is re-padded.
    t, lb2 = pre.pre(frame(200, 100))
    assert lb2.content == (16, 0, 48, 64) and np.all(t[0, :, :16] == 114)


def test_letterbox_for_policies():
    lb = letterbox_for((1920, 1080), (1024, 512), "letterbox")
    assert lb.content_size == (910, 512) and (lb.pad_x, lb.pad_y) == (57, 0)
    with pytest.raises(ConfigError):
        letterbox_for((10, 10), (4, 4), "crop")


@pytest.mark.parametrize("order", ["RGB", "BGR"])
def test_unfused_normalisation_matches_numpy(order):
    pre = Preprocessor(manifest(fused=False, order=order))
    f = frame()
    t, _ = pre.pre(f)
    assert t.shape == (1, 3, 48, 64) and t.dtype == np.float32
    r = cv2.resize(f, (64, 48), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    if order == "RGB":
        r = r[..., ::-1]
    ref = ((r - np.array([10, 20, 30], np.float32)) / np.array([2, 4, 8], np.float32)).transpose(2, 0, 1)
    np.testing.assert_allclose(t[0], ref, rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("fused", [True, False])
def test_preprocess_allocates_nothing_per_frame(fused):
    pre = Preprocessor(manifest(96, 128, fused=fused, resize="letterbox"))
    f = frame(360, 640)
    pre.pre(f)
    tracemalloc.start()
    for _ in range(20):
        pre.pre(f)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # numpy's ufunc casting buffer (32 KB) may appear; nothing the size of the tensor is made.
    assert peak < min(0.5 * pre.tensor.nbytes, 40_000)


# ------------------------------------------------------------------ mask decoding
def test_running_argmax_equals_numpy_argmax_including_ties():
    m = manifest(fused=False)
    dec = MaskDecoder(m)
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((1, 5, 48, 64)).astype(np.float32)
    logits[0, :, :4, :4] = 1.0  # an exact 5-way tie: the first class wins, as np.argmax
    logits[0, 2:4, 10:20, 10:20] = 7.0
    out = dec.decode({"logits": logits})
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, np.argmax(logits[0], axis=0))
    assert np.all(out[:4, :4] == 0) and np.all(out[10:20, 10:20] == 2)
    # fp16 logits decode too
    np.testing.assert_array_equal(dec.decode({"logits": logits.astype(np.float16)}),
                                  np.argmax(logits[0].astype(np.float16), axis=0))


@pytest.mark.parametrize("h", [48, 37, 5])  # bands of rows: even, uneven, too few rows to split
def test_channel_last_logits_decode_like_nchw_including_ties(h):
    """OpenVINO hands back an (N,C,H,W) view of an NHWC buffer; the mask is the same."""
    dec = MaskDecoder(manifest(fused=False))
    rng = np.random.default_rng(3)
    nchw = rng.standard_normal((1, 5, h, 64)).astype(np.float32)
    nchw[0, :, :4, :4] = 1.0  # a 5-way tie: class 0
    nchw[0, 1:4, 20:30, 5:9] = 9.0  # a 3-way tie: class 1
    view = np.ascontiguousarray(nchw.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    assert view.shape == nchw.shape and not view.flags.c_contiguous
    expected = np.argmax(nchw[0], axis=0)
    out = np.zeros((h, 64), np.uint8)
    np.testing.assert_array_equal(dec.decode({"logits": view}, out=out), expected)
    np.testing.assert_array_equal(dec.decode({"logits": nchw}), expected)  # and back to plain NCHW
    np.testing.assert_array_equal(dec.decode({"logits": view}), expected)
    assert np.all(out[:4, :4] == 0) and np.all(out[20:30, 5:9] == 1)  # ties across a band boundary


def test_mask_outputs_pass_through_and_fresh_copy():
    m = manifest()
    mask = np.random.default_rng(1).integers(0, 5, (1, 48, 64), dtype=np.uint8)
    view = MaskDecoder(m).decode({"mask": mask})
    assert np.shares_memory(view, mask)
    fresh = mask_from_outputs({"mask": mask}, m)
    assert not np.shares_memory(fresh, mask)
    np.testing.assert_array_equal(fresh, mask[0])


def test_decoder_errors_name_the_problem():
    from segrt.errors import BackendError
    with pytest.raises(BackendError, match="output 'mask' missing"):
        MaskDecoder(manifest()).decode({"other": np.zeros((1, 4, 4), np.uint8)})


# ------------------------------------------------------------------ rendering
def _two_class_mask(h=48, w=64):
    mask = np.zeros((h, w), np.uint8)
    mask[:, w // 2:] = 3  # right half class 3, left half background
    return mask


def test_overlay_blends_objects_and_leaves_background_untouched():
    m = manifest()
    r = Renderer(m, view="overlay", alpha=0.4, legend=False)
    f = frame(96, 128)
    lb = letterbox_for((128, 96), (64, 48), "stretch")
    out = r.render(f, _two_class_mask(), lb)
    assert out.shape == f.shape
    np.testing.assert_array_equal(out[:, :64], f[:, :64])  # background: the frame itself
    colour = np.array(m.palette[3], np.float64)
    expected = np.clip(np.round(f[:, 64:] * 0.6 + colour * 0.4), 0, 255)
    assert np.abs(out[:, 64:].astype(np.float64) - expected).max() <= 1


def test_mask_view_and_side_by_side():
    m = manifest()
    f = frame(96, 128)
    lb = letterbox_for((128, 96), (64, 48), "stretch")
    mask_img = Renderer(m, view="mask", legend=False).render(f, _two_class_mask(), lb)
    assert np.all(mask_img[:, :64] == m.palette[0]) and np.all(mask_img[:, 64:] == m.palette[3])
    sbs = Renderer(m, view="side-by-side", legend=False).render(f, _two_class_mask(), lb)
    assert sbs.shape == (96, 256, 3)
    np.testing.assert_array_equal(sbs[:, 128:], mask_img)
    np.testing.assert_array_equal(sbs[:, :64], f[:, :64])


def test_letterboxed_mask_maps_back_to_the_frame():
    m = manifest(64, 64, resize="letterbox")
    f = frame(100, 200)
    pre = Preprocessor(m)
    _, lb = pre.pre(f)
    mask = np.full((64, 64), 1, np.uint8)  # padding rows say class 1 ...
    mask[16:48, 32:] = 2  # ... the content's right half class 2
    mask[16:48, :32] = 0
    out = Renderer(m, view="mask", legend=False).render(f, mask, lb)
    assert np.all(out[:, :100] == m.palette[0]) and np.all(out[:, 100:] == m.palette[2])


def test_legend_shares_and_stats_are_drawn():
    m = manifest()
    f = np.full((270, 480, 3), 90, np.uint8)
    lb = letterbox_for((480, 270), (64, 48), "stretch")
    plain = Renderer(m, legend=False).render(f, _two_class_mask(), lb).copy()
    withleg = Renderer(m, legend=True, shares=True).render(f, _two_class_mask(), lb, stats_text="FPS 30.0\nx")
    diff = np.any(withleg != plain, axis=2)
    ys, xs = np.nonzero(diff)
    assert diff[:60, 300:].any()  # the legend panel, top right
    assert diff[:60, :150].any()  # the stats panel, top left
    assert not diff[150:, 150:300].any()  # nothing else moved
    # Two classes present (background and "c"): two legend rows with their swatch colours.
    assert (withleg[:60, 300:] == m.palette[3]).all(axis=2).sum() > 20


def test_render_allocates_nothing_per_frame():
    m = manifest(96, 128)
    r = Renderer(m, view="overlay", legend=True, shares=True)
    f = frame(360, 640)
    lb = letterbox_for((640, 360), (128, 96), "stretch")
    mask = np.random.default_rng(0).integers(0, 5, (96, 128), dtype=np.uint8)
    r.render(f, mask, lb, "FPS 1")
    tracemalloc.start()
    for _ in range(10):
        out = r.render(f, mask, lb, "FPS 1")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert out is r.render(f, mask, lb)
    assert peak < 64_000  # a 640x360 frame is 691 KB: no frame-sized array is made per call


def test_renderer_validates_options():
    with pytest.raises(ConfigError, match="unknown view"):
        Renderer(manifest(), view="heatmap")
    with pytest.raises(ConfigError, match="alpha"):
        Renderer(manifest(), alpha=1.5)


def test_letterbox_dataclass_fields():
    lb = Letterbox(0.5, 0.5, 3, 4, (100, 100), (188, 184), (94, 92))
    assert lb.scale == 0.5 and lb.content == (3, 4, 97, 96)


def _reference_overlay(f: np.ndarray, mask: np.ndarray, lb: Letterbox, palette, alpha: float) -> np.ndarray:
    """The whole-frame overlay, written independently: palette, nearest upscale, blend, background kept."""
    x0, y0, x1, y1 = lb.content
    roi = mask[y0:y1, x0:x1]
    h, w = f.shape[:2]
    pal = np.array(list(palette) + [(128, 128, 128)] * (256 - len(palette)), np.uint8)
    col = cv2.resize(pal[roi], (w, h), interpolation=cv2.INTER_NEAREST)
    out = cv2.addWeighted(f, 1 - alpha, col, alpha, 0)
    bg = cv2.resize((roi == 0).astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
    out[bg] = f[bg]
    return out


@pytest.mark.parametrize("frame_size, model_size, policy", [
    ((640, 360), (256, 128), "stretch"),  # 64 exact tiles
    ((480, 270), (128, 128), "letterbox"),
    ((500, 350), (111, 67), "stretch"),  # no exact tiling: whole-frame path
])
def test_overlay_tiles_equal_the_whole_frame_overlay(frame_size, model_size, policy):
    from segrt.runtime.render import tile_grid

    (fw, fh), (mw, mh) = frame_size, model_size
    m = manifest(mh, mw, resize=policy)
    r = Renderer(m, view="overlay", alpha=0.5, legend=False)
    lb = letterbox_for((fw, fh), (mw, mh), policy)
    rng = np.random.default_rng(1)
    f = frame(fh, fw, seed=3)
    x0, y0, x1, y1 = lb.content
    sparse = np.zeros((mh, mw), np.uint8)  # a few objects: most tiles are background only
    for _ in range(3):
        cx, cy = int(rng.integers(x0, x1)), int(rng.integers(y0, y1))
        cv2.circle(sparse, (cx, cy), int(rng.integers(3, 12)), int(rng.integers(1, 5)), -1)
    dense = rng.integers(0, 5, (mh, mw), dtype=np.uint8)  # every tile busy: whole-frame path
    only_bg, no_bg = np.zeros((mh, mw), np.uint8), np.full((mh, mw), 2, np.uint8)
    for mask in (sparse, dense, only_bg, no_bg):
        out = r.render(f, mask, lb)
        np.testing.assert_array_equal(out, _reference_overlay(f, mask, lb, m.palette, 0.5))
    grid = tile_grid((fw, fh), lb.content_size)
    assert (grid is None) == (frame_size == (500, 350))


def test_legend_follows_classes_at_once_and_shares_every_few_frames():
    from segrt.runtime.render import _SHARES_EVERY

    m = manifest()
    r = Renderer(m, legend=True, shares=True)
    f = np.full((270, 480, 3), 90, np.uint8)
    lb = letterbox_for((480, 270), (64, 48), "stretch")
    panel = (slice(0, 80), slice(300, 480))
    a = _two_class_mask()  # background | class 3, half and half
    b = a.copy()
    b[:, 32:40] = 0  # same classes, other shares
    c = a.copy()
    c[:10, :10] = 1  # a new class
    first = r.render(f, a, lb)[panel].copy()
    lagging = [np.array_equal(r.render(f, b, lb)[panel], first) for _ in range(_SHARES_EVERY)]
    assert lagging[0] and not lagging[-1]  # shares catch up within _SHARES_EVERY frames
    with_new = r.render(f, c, lb)[panel]
    assert (with_new == m.palette[1]).all(axis=2).sum() > 20  # the new class's swatch, immediately


def test_overlay_tiles_without_a_background_class_blend_every_pixel():
    """Cityscapes-like classes: no background to keep; uniform tiles take the one-call tint."""
    classes = ("road", "sky", "car")
    m = Manifest(name="t", classes=classes, palette=default_palette(3), input=InputSpec(name="frame", height=64, width=128),
                 preprocess=PreprocessSpec(), output=OutputSpec(kind="mask", names=("mask",), num_classes=3))
    r = Renderer(m, view="overlay", alpha=0.4, legend=False)
    lb = letterbox_for((512, 256), (128, 64), "stretch")
    f = frame(256, 512, seed=5)
    mask = np.zeros((64, 128), np.uint8)
    mask[:24] = 1  # sky
    mask[40:52, 30:70] = 2  # a car on the road
    out = r.render(f, mask, lb)
    pal = np.array(m.palette, np.uint8)
    colours = cv2.resize(pal[mask], (512, 256), interpolation=cv2.INTER_NEAREST)
    expected = cv2.addWeighted(f, 0.6, colours, 0.4, 0)
    assert np.abs(out.astype(np.int16) - expected).max() <= 1
    assert r._tiles is not None


VOC = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
       "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor")


def _voc_mask(h=256, w=256) -> np.ndarray:
    """All 21 VOC classes present: sheep (id 17) on 7.8% of the pixels, aeroplane (id 1) on the
    fewest (4 rows; the legend samples every 4th row), the others 8 rows each, background the rest."""
    mask = np.zeros((h, w), np.uint8)
    mask[:20] = VOC.index("sheep")
    mask[20:24] = VOC.index("aeroplane")
    y = 24
    for c in range(2, 21):
        if VOC[c] != "sheep":
            mask[y:y + 8] = c
            y += 8
    return mask


@pytest.mark.parametrize("frame_h, rows", [(1080, 16), (160, None)])
def test_legend_ranks_present_classes_by_share_then_says_how_many_more(frame_h, rows):
    m = Manifest(name="voc", classes=VOC, palette=default_palette(len(VOC)), input=InputSpec(name="frame",
                 height=256, width=256), preprocess=PreprocessSpec(),
                 output=OutputSpec(kind="mask", names=("mask",), num_classes=len(VOC)))
    mask = _voc_mask()
    frame_w = frame_h * 16 // 9
    r = Renderer(m, legend=True, shares=True)
    r.render(np.zeros((frame_h, frame_w, 3), np.uint8), mask, letterbox_for((frame_w, frame_h), (256, 256), "stretch"))
    lines = r.legend_lines
    names = [ln.split()[0] for ln in lines[:-1]]
    assert names[0] == "background" and names[1] == "sheep"  # ranked by share
    assert lines[1] == "sheep 7.8%"
    assert "aeroplane" not in names  # the smallest share is among those left out
    assert lines[-1] == f"+{21 - len(names)} more"
    if rows is not None:
        assert len(lines) == rows
    else:  # a short frame fits fewer rows; the count still adds up to the 21 classes present
        assert len(lines) < 16
