"""Instance post-processing: mask pasting geometry with known boxes and masks, letterbox mapping, drawing."""
from __future__ import annotations

import numpy as np
import pytest

from segrt.runtime import kernels
from segrt.runtime.instances import Instance, box_pixels, instance_columns, instances_from_outputs, paste_mask
from segrt.runtime.manifest import InputSpec, Manifest, OutputSpec, PreprocessSpec, default_palette
from segrt.runtime.preprocess import letterbox_for
from segrt.runtime.render import Renderer


@pytest.fixture(autouse=True, params=["compiled", "opencv"])
def paste_and_draw_code(request, monkeypatch):
    """Every test here runs on both implementations: numba's loops (segrt[fast]) and plain OpenCV."""
    if request.param == "compiled":
        if not kernels.enabled():
            pytest.skip("numba is not installed (pip install 'segrt[fast]') or SEGRT_NO_JIT is set")
    else:
        monkeypatch.setattr(kernels, "enabled", lambda: False)
    return request.param

def test_full_mask_fills_exactly_the_box():
    origin, m = paste_mask(np.ones((28, 28), np.float32), (10.0, 20.0, 50.0, 44.0), (100, 80))
    assert origin == (10, 20) and m.shape == (24, 40) and m.all()
    inst = Instance(1, 0.9, (10.0, 20.0, 50.0, 44.0), origin, m)
    full = inst.full_mask((100, 80))
    ys, xs = np.nonzero(full)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (10, 49, 20, 43)
    assert inst.area == 40 * 24


def test_half_mask_pastes_to_the_left_half_and_threshold_applies():
    prob = np.zeros((28, 28), np.float32)
    prob[:, :14] = 0.8  # left half confident
    prob[:, 14:] = 0.3  # right half below 0.5
    origin, m = paste_mask(prob, (0.0, 0.0, 56.0, 28.0), (64, 64))
    assert m.shape == (28, 56)
    cols = m.any(axis=0)
    # Bilinear resize puts the 0.8 -> 0.3 edge exactly at the box's middle (column 28).
    assert cols[:28].all() and not cols[28:].any()
    _, lo = paste_mask(prob, (0.0, 0.0, 56.0, 28.0), (64, 64), threshold=0.25)
    assert lo.all()


def test_quadrant_mask_scales_with_the_box():
    prob = np.zeros((1, 28, 28), np.float32)  # (1,M,M) as Mask R-CNN returns it
    prob[0, 14:, 14:] = 1.0  # bottom-right quadrant
    origin, m = paste_mask(prob, (100.0, 50.0, 212.0, 106.0), (400, 300))  # 112 x 56 box (4x, 2x)
    ys, xs = np.nonzero(m)
    assert origin == (100, 50)
    assert xs.min() == pytest.approx(56, abs=2) and xs.max() == 111
    assert ys.min() == pytest.approx(28, abs=1) and ys.max() == 55


def test_box_outside_and_partially_outside_the_frame():
    assert paste_mask(np.ones((28, 28)), (120, 10, 150, 20), (100, 80)) is None
    origin, m = paste_mask(np.ones((28, 28)), (-10.0, -5.0, 30.0, 15.0), (100, 80))
    assert origin == (0, 0) and m.shape == (15, 30) and m.all()


def test_box_pixels_rounding():
    assert box_pixels((10.4, 20.6, 30.49, 40.5)) == (10, 21, 30, 41)
    assert box_pixels((5.0, 5.0, 5.1, 5.2)) == (5, 5, 6, 6)  # never empty


def _outputs(boxes, scores, labels=None, masks=None):
    k = len(scores)
    return {
        "boxes": np.asarray(boxes, np.float32).reshape(k, 4),
        "labels": np.asarray(labels if labels is not None else [1] * k, np.int64),
        "scores": np.asarray(scores, np.float32),
        "masks": masks if masks is not None else np.ones((k, 1, 28, 28), np.float32),
    }


def test_instances_from_outputs_threshold_order_and_letterbox_mapping():
    # A 200x100 frame letterboxed into 64x64: scale 0.32, content rows 16..48.
    lb = letterbox_for((200, 100), (64, 64), "letterbox")
    outs = _outputs([[0, 16, 32, 32], [32, 32, 64, 48], [0, 20, 10, 30]], [0.6, 0.95, 0.2], labels=[1, 2, 1])
    inst = instances_from_outputs(outs, lb, score_threshold=0.5)
    assert [i.score for i in inst] == pytest.approx([0.95, 0.6])
    assert [i.label for i in inst] == [2, 1]
    assert inst[0].box == pytest.approx((100.0, 50.0, 200.0, 100.0))
    assert inst[1].box == pytest.approx((0.0, 0.0, 100.0, 50.0))
    full = inst[1].full_mask((200, 100))
    ys, xs = np.nonzero(full)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (0, 99, 0, 49)
    assert instances_from_outputs(outs, lb, score_threshold=0.1)[-1].score == pytest.approx(0.2)


def test_box_in_the_letterbox_padding_is_dropped():
    lb = letterbox_for((200, 100), (64, 64), "letterbox")
    inst = instances_from_outputs(_outputs([[0, 0, 64, 10]], [0.9]), lb)  # rows 0..10 are padding
    assert inst == []


def test_empty_detections():
    lb = letterbox_for((64, 64), (64, 64), "stretch")
    outs = {"boxes": np.zeros((0, 4), np.float32), "labels": np.zeros((0,), np.int64),
            "scores": np.zeros((0,), np.float32), "masks": np.zeros((0, 1, 28, 28), np.float32)}
    assert instances_from_outputs(outs, lb) == []


def _padded(outs, rows):
    """The static-shape contract: every output padded with zeros to ``rows`` plus num_detections."""
    k = len(outs["scores"])
    padded = {n: np.concatenate([a, np.zeros((rows - k, *a.shape[1:]), a.dtype)]) for n, a in outs.items()}
    return {**padded, "num_detections": np.array([k], np.int64)}


def test_padded_outputs_use_only_the_first_num_detections_rows():
    lb = letterbox_for((64, 64), (64, 64), "stretch")
    outs = _outputs([[8, 8, 40, 40], [40, 40, 60, 60]], [0.9, 0.8], [1, 2])
    padded = _padded(outs, 100)
    # rows past num_detections would pass a zero threshold: they must still be ignored
    padded["scores"][2:] = 0.99
    got = instances_from_outputs(padded, lb, score_threshold=0.0)
    want = instances_from_outputs(outs, lb, score_threshold=0.0)
    assert len(got) == 2 and [(i.label, i.score, i.box) for i in got] == [(i.label, i.score, i.box) for i in want]
    assert all(np.array_equal(a.mask, b.mask) for a, b in zip(got, want))
    empty = _padded({n: a[:0] for n, a in outs.items()}, 100)
    assert instances_from_outputs(empty, lb, score_threshold=0.0) == []


def test_a_num_detections_beyond_the_rows_is_an_error():
    from segrt.errors import BackendError

    lb = letterbox_for((64, 64), (64, 64), "stretch")
    bad = _padded(_outputs([[8, 8, 40, 40]], [0.9]), 4)
    bad["num_detections"] = np.array([5], np.int64)
    with pytest.raises(BackendError, match="num_detections is 5 but the outputs have 4 rows"):
        instances_from_outputs(bad, lb)


def test_instance_rendering_draws_masks_boxes_and_labels():
    classes = ("__background__", "person", "car")
    m = Manifest(name="mrcnn", classes=classes, palette=default_palette(3),
                 input=InputSpec(name="frame", height=64, width=64), preprocess=PreprocessSpec(),
                 output=OutputSpec(kind="instances", names=("boxes", "labels", "scores", "masks"), num_classes=3))
    f = np.full((128, 128, 3), 100, np.uint8)
    lb = letterbox_for((128, 128), (64, 64), "stretch")
    prob = np.zeros((2, 1, 28, 28), np.float32)
    prob[:, :, 7:21, 7:21] = 1.0  # the middle half of each box
    inst = instances_from_outputs(_outputs([[8, 8, 40, 40], [40, 40, 60, 60]], [0.9, 0.8], [1, 2], prob), lb)
    r = Renderer(m, view="overlay", alpha=0.5, legend=True)
    out = r.render(f, inst, lb).copy()
    # Inside the first instance's mask the frame is tinted; far from anything it is untouched.
    centre = out[48, 48].astype(int)
    assert np.abs(centre - 100).max() > 20
    assert np.all(out[120:, :60] == 100)
    # The box outline (x=16 column) is drawn in the instance colour, not the frame grey.
    assert np.any(out[30:60, 16] != 100)
    side = Renderer(m, view="side-by-side", legend=False).render(f, inst, lb)
    assert side.shape == (128, 256, 3)
    assert np.all(side[100:, 130:200] == 0)  # the mask panel's background is black


def _two_overlapping(lb):
    prob = np.ones((2, 1, 28, 28), np.float32)
    return instances_from_outputs(_outputs([[8, 8, 40, 40], [24, 24, 56, 56]], [0.6, 0.9], [1, 2], prob), lb)


def test_the_more_confident_instance_is_painted_on_top_and_outlined():
    classes = ("__background__", "person", "car")
    m = Manifest(name="mrcnn", classes=classes, palette=default_palette(3),
                 input=InputSpec(name="frame", height=64, width=64), preprocess=PreprocessSpec(),
                 output=OutputSpec(kind="instances", names=("boxes", "labels", "scores", "masks"), num_classes=3))
    lb = letterbox_for((64, 64), (64, 64), "stretch")
    inst = _two_overlapping(lb)
    r = Renderer(m, view="mask", legend=False)
    out = r.render(np.full((64, 64, 3), 100, np.uint8), inst, lb).copy()
    low, high = (tuple(int(v) for v in r._inst_colours[j]) for j in (1, 0))  # instance 0 is the 0.9 one
    assert tuple(out[30, 30]) == high  # the overlap shows the more confident instance
    # only the 0.6 instance covers this pixel; below its label tag, whose size depends on the
    # OpenCV version (4.10 draws Hershey text half as wide again as 5.0)
    assert tuple(out[30, 12]) == low
    assert not out[60:, :20].any()  # the mask view's background stays black
    # at the 0.9 instance's left border (x=24) inside the 0.6 one: its colour up to the border,
    # the 0.6 instance's own colour right outside it (no spill either way)
    assert tuple(out[30, 24]) == high and tuple(out[30, 23]) == low
    # a second frame with the same instances draws the same picture (the id map is reset)
    again = r.render(np.full((64, 64, 3), 100, np.uint8), inst, lb)
    assert np.array_equal(out, again)
    empty = r.render(np.full((64, 64, 3), 100, np.uint8), [], lb)
    assert not empty.any()
    overlay = Renderer(m, view="overlay", alpha=0.5, legend=False).render(np.full((64, 64, 3), 100, np.uint8), inst, lb)
    tint = (np.array(high) * 0.5 + 100 * 0.5).round()
    assert np.abs(overlay[34, 34].astype(int) - tint).max() <= 1  # an inside pixel: frame and colour, half each
    assert np.all(overlay[60:, :20] == 100)  # untouched frame outside every instance


def _manifest(num_classes=91):
    """An instance bundle's manifest with COCO's number of classes (names c1, c2, ...)."""
    classes = ("__background__",) + tuple(f"c{i}" for i in range(1, num_classes))
    return Manifest(name="mrcnn", classes=classes, palette=default_palette(num_classes),
                    input=InputSpec(name="frame", height=320, width=480, layout="NHWC", dtype="uint8", fused=True),
                    preprocess=PreprocessSpec(resize="letterbox"),
                    output=OutputSpec(kind="instances", names=("boxes", "labels", "scores", "masks"),
                                      num_classes=num_classes))


def _crowded_scene(n=100, seed=3):
    """``n`` detections with varied masks at 1080p-like geometry (some boxes leave the frame or sit in the padding)."""
    rng = np.random.default_rng(seed)
    side = rng.uniform(0.5, 200.0, (n, 2))
    x0 = rng.uniform(-40, 480, n)
    y0 = rng.uniform(-40, 320, n)
    boxes = np.stack([x0, y0, x0 + side[:, 0], y0 + side[:, 1]], 1)
    masks = rng.uniform(0, 1, (n, 1, 28, 28)).astype(np.float32)
    scores = rng.uniform(0.3, 1.0, n).astype(np.float32)
    return _outputs(boxes, scores, rng.integers(1, 91, n), masks)


def test_vectorised_paste_equals_pasting_each_mask_alone():
    lb = letterbox_for((1280, 720), (480, 320), "letterbox")
    out = _crowded_scene()
    got = instances_from_outputs(out, lb, 0.5)
    frame_boxes = lb.boxes_to_frame(out["boxes"], clip=False)
    keep = [i for i in np.argsort(-out["scores"], kind="stable") if out["scores"][i] >= 0.5]
    want = []
    for i in keep:  # the reference: paste_mask per detection, box clipped to the frame
        pasted = paste_mask(out["masks"][i], frame_boxes[i], lb.frame_size)
        if pasted is not None:
            box = tuple(min(max(float(v), 0.0), lim) for v, lim in zip(frame_boxes[i], (1280, 720, 1280, 720)))
            want.append((int(out["labels"][i]), float(out["scores"][i]), box, pasted))
    assert len(got) == len(want) > 30
    for g, (label, score, box, (origin, mask)) in zip(got, want):
        assert (g.label, g.score, g.box, g.origin) == (label, score, box, origin)
        assert g.mask.dtype == np.uint8 and np.array_equal(g.mask, mask) and set(np.unique(g.mask)) <= {0, 1}


def test_painted_ids_equal_the_max_of_rank_times_mask():
    from segrt.runtime.render_instances import InstancePainter

    lb = letterbox_for((1280, 720), (480, 320), "letterbox")
    inst = instances_from_outputs(_crowded_scene(seed=4), lb, 0.5)
    colours = np.random.default_rng(0).integers(1, 256, (23, 3)).astype(np.uint8)
    painter = InstancePainter(colours)
    columns = instance_columns(inst)
    order = painter.order(columns).tolist()
    ids = np.zeros((720, 1280), np.int64)
    colour_of_rank = np.zeros((len(order) + 1, 3), np.uint8)
    for rank, j in enumerate(order, start=1):  # the documented rule, in plain numpy
        x, y = inst[j].origin
        mh, mw = inst[j].mask.shape
        region = ids[y:y + mh, x:x + mw]
        np.maximum(region, rank * inst[j].mask[:region.shape[0], :region.shape[1]], out=region)
        colour_of_rank[rank] = colours[j % len(colours)]
    for _ in range(2):  # the second frame starts from a cleared id map
        canvas = np.zeros((720, 1280, 3), np.uint8)
        painter.draw(inst, columns, order, np.zeros_like(canvas), [(canvas, False)], 0.5, 2)
        # fills and outlines are both each pixel's own instance colour; background stays black
        assert np.array_equal(canvas, colour_of_rank[ids])


def _reference_paste(prob, pixels, frame_size):
    """Bilinear resize of ``prob`` to the whole-pixel box, as torchvision's interpolate(align_corners=False)
    and cv2.resize place pixel centres (source coordinate clamped to the edge rows and columns), in float64.

    Returns (origin, probability crop inside the frame), written here independently of the runtime.
    """
    x0, y0, x1, y1 = pixels
    m = prob.shape[0]

    def taps(n):
        src = np.clip((np.arange(n) + 0.5) * m / n - 0.5, 0, m - 1)
        i0 = np.floor(src).astype(int)
        i1 = np.minimum(i0 + 1, m - 1)
        return i0, i1, src - i0

    r0, r1, fy = taps(y1 - y0)
    c0, c1, fx = taps(x1 - x0)
    p = prob.astype(np.float64)
    top = p[r0][:, c0] * (1 - fx) + p[r0][:, c1] * fx
    bottom = p[r1][:, c0] * (1 - fx) + p[r1][:, c1] * fx
    value = top * (1 - fy)[:, None] + bottom * fy[:, None]
    w, h = frame_size
    cx0, cy0 = max(x0, 0), max(y0, 0)
    return (cx0, cy0), value[cy0 - y0:min(y1, h) - y0, cx0 - x0:min(x1, w) - x0]


def _smooth_masks(n, rng):
    """Mask R-CNN-like probabilities: a steep sigmoid of a smooth random field, so each mask is a few blobs."""
    yy, xx = np.mgrid[0:28, 0:28] / 27.0
    out = np.zeros((n, 1, 28, 28), np.float32)
    for k in range(n):
        field = sum(rng.normal() * np.cos(np.pi * (a * xx + b * yy) + rng.uniform(0, 6))
                    for a, b in rng.integers(0, 4, (4, 2)))
        out[k, 0] = 1.0 / (1.0 + np.exp(-6.0 * (field + rng.normal(0, 0.5))))
    return out


@pytest.mark.parametrize("smooth", [True, False])
def test_pasted_masks_match_a_float_reference_paste(smooth):
    """Every pasted mask is the reference's (bilinear to the box, >= 0.5), save float rounding at exact
    ties with the threshold; smooth masks of 1000 pixels or more agree at IoU >= 0.99."""
    lb = letterbox_for((1920, 1080), (480, 320), "letterbox")
    out = _crowded_scene(n=80, seed=11)
    if smooth:
        out["masks"] = _smooth_masks(80, np.random.default_rng(5))
    got = instances_from_outputs(out, lb, 0.5)
    frame_boxes = lb.boxes_to_frame(out["boxes"], clip=False)
    keep = [i for i in np.argsort(-out["scores"], kind="stable") if out["scores"][i] >= 0.5]
    want = [(i, box_pixels(frame_boxes[i])) for i in keep]
    want = [(i, px) for i, px in want if min(px[2], 1920) > max(px[0], 0) and min(px[3], 1080) > max(px[1], 0)]
    assert len(got) == len(want) > 20
    ious = []
    for g, (i, px) in zip(got, want):
        origin, value = _reference_paste(out["masks"][i, 0], px, (1920, 1080))
        ref = value >= 0.5
        assert g.origin == origin and g.mask.shape == ref.shape
        differ = g.mask.astype(bool) != ref
        assert np.all(np.abs(value[differ] - 0.5) <= 1e-5), "a pixel away from the threshold differs"
        assert g.area == int(np.count_nonzero(g.mask))
        if ref.sum() >= 1000:  # smaller masks are mostly border, where near-ties sit
            ious.append((g.mask.astype(bool) & ref).sum() / (g.mask.astype(bool) | ref).sum())
    if smooth:
        assert len(ious) > 20 and min(ious) >= 0.99


def _reference_overlay(inst, frame, colours, alpha):
    """The painter's overlay written out in numpy: the most confident covering instance colours each pixel,
    blended with the frame; pixels whose 3x3 neighbourhood (inside the frame) holds another id are
    outlines in their own instance's colour; uncovered pixels are the frame."""
    h, w = frame.shape[:2]
    by_score = sorted(range(len(inst)), key=lambda k: inst[k].score)
    ids = np.zeros((h, w), np.int64)
    for rank, j in enumerate(by_score, start=1):
        full = inst[j].full_mask((w, h)).astype(bool)
        ids[full] = rank
    colour = np.zeros((len(inst) + 1, 3))
    for rank, j in enumerate(by_score, start=1):
        colour[rank] = colours[j % len(colours)]
    padded_hi = np.pad(ids, 1, constant_values=-1)
    padded_lo = np.pad(ids, 1, constant_values=10 ** 6)
    hi = np.max([padded_hi[1 + dy:h + 1 + dy, 1 + dx:w + 1 + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)], 0)
    lo = np.min([padded_lo[1 + dy:h + 1 + dy, 1 + dx:w + 1 + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)], 0)
    outline = (ids > 0) & (hi != lo)
    want = frame.astype(np.float64) * (1 - alpha) + colour[ids] * alpha
    want[ids == 0] = frame[ids == 0]
    want[outline] = colour[ids][outline]
    return want, ids, outline


@pytest.mark.parametrize("threads", [1, 3])
def test_overlay_equals_a_numpy_reference_and_the_most_confident_instance_is_on_top(threads, monkeypatch):
    from segrt.runtime import parallel
    from segrt.runtime.render_instances import InstancePainter

    monkeypatch.setattr(parallel, "parts", lambda: threads)  # bands of rows, split across threads or not
    lb = letterbox_for((1280, 720), (480, 320), "letterbox")
    out = _crowded_scene(n=60, seed=7)
    out["masks"] = _smooth_masks(60, np.random.default_rng(8))
    inst = instances_from_outputs(out, lb, 0.5)
    frame = np.random.default_rng(2).integers(0, 256, (720, 1280, 3), dtype=np.uint8)
    colours = np.random.default_rng(0).integers(1, 256, (23, 3)).astype(np.uint8)
    painter = InstancePainter(colours)
    want, ids, outline = _reference_overlay(inst, frame, colours, 0.4)
    assert outline.sum() > 1000 and (ids == 0).sum() > 1000  # outlines and uncovered frame both present
    for _ in range(2):  # the second frame starts from a cleared id map
        canvas = np.zeros_like(frame)
        columns = instance_columns(inst)
        painter.draw(inst, columns, painter.order(columns), frame, [(canvas, True)], 0.4, 2)
        assert np.abs(canvas.astype(np.int64) - want).max() <= 1
        assert np.array_equal(canvas[ids == 0], frame[ids == 0])


def test_both_implementations_give_the_same_masks_counts_and_picture(paste_and_draw_code, monkeypatch):
    """The compiled paste and drawing equal the OpenCV ones: masks and pixel counts exactly, the
    rendered picture (fills, outlines, boxes, tags, legend) to the byte, on a crowded frame with
    boxes hanging off every edge. (Not a law: the two resizes round differently in the last bit, so
    a pixel whose value lies within float rounding of the threshold can differ; none does here.)"""
    if paste_and_draw_code == "opencv":
        pytest.skip("compares the two implementations once")
    lb = letterbox_for((1280, 720), (480, 320), "letterbox")
    out = _crowded_scene(n=100, seed=11)
    out["boxes"][:10] += np.array([-60, -40, -60, -40], np.float32)  # off the top-left
    out["boxes"][10:20] += np.array([60, 40, 60, 40], np.float32)  # off the bottom-right
    out["masks"] = _smooth_masks(100, np.random.default_rng(12))
    frame = np.random.default_rng(3).integers(0, 256, (720, 1280, 3), dtype=np.uint8)
    manifest = _manifest()

    def paste_and_render():
        inst = instances_from_outputs(out, lb, 0.5)
        return inst, Renderer(manifest).render(frame, inst, lb).copy()

    compiled, picture = paste_and_render()
    monkeypatch.setattr(kernels, "enabled", lambda: False)
    plain, want = paste_and_render()
    assert len(compiled) == len(plain) > 50
    for a, b in zip(compiled, plain):
        assert a.origin == b.origin and a.mask.shape == b.mask.shape
        assert np.array_equal(a.mask, b.mask)
        assert a.area == b.area == int(np.count_nonzero(b.mask))
    assert np.array_equal(picture, want)


def test_compiled_box_outlines_equal_cv2_rectangle(paste_and_draw_code):
    """kernels.box_outlines draws exactly the pixels of the nested one-pixel cv2.rectangle calls,
    clipped to the canvas, for boxes inside, across and outside its edges and thin or empty nests."""
    import cv2

    if paste_and_draw_code == "opencv":
        pytest.skip("tests the compiled kernel against OpenCV once")
    rng = np.random.default_rng(0)
    for _ in range(300):
        h, w = (int(v) for v in rng.integers(1, 60, 2))
        n = int(rng.integers(1, 8))
        x0, y0 = rng.integers(-20, w + 5, n), rng.integers(-20, h + 5, n)
        boxes = np.stack([x0, y0, x0 + rng.integers(0, 40, n), y0 + rng.integers(0, 40, n)], 1).astype(np.int64)
        colours = rng.integers(0, 256, (n, 3)).astype(np.uint8)
        thickness = int(rng.integers(1, 5))
        got = rng.integers(0, 256, (h, w, 3)).astype(np.uint8)
        want = got.copy()
        band = sorted(int(v) for v in rng.integers(-3, h + 3, 2))
        for row0, row1 in ((-5, band[0]), (band[0], band[1]), (band[1], h + 5)):  # three bands make the whole
            kernels.box_outlines(got, boxes, colours, thickness, row0, row1)
        for (bx0, by0, bx1, by1), colour in zip(boxes.tolist(), colours.tolist()):
            for k in range(thickness):
                if bx0 + k > bx1 - k or by0 + k > by1 - k:
                    break
                cv2.rectangle(want, (bx0 + k, by0 + k), (bx1 - k, by1 - k), tuple(colour), 1)
        assert np.array_equal(got, want), (boxes.tolist(), thickness, (h, w))


def test_instances_the_paste_did_not_make_draw_the_same(paste_and_draw_code):
    """A plain list of the same instances (no recorded columns, no instance map) draws the same
    picture; a list changed after the paste is drawn as it is now, not from its recorded columns."""
    lb = letterbox_for((1280, 720), (480, 320), "letterbox")
    out = _crowded_scene(n=60, seed=5)
    inst = instances_from_outputs(out, lb, 0.5)
    frame = np.random.default_rng(4).integers(0, 256, (720, 1280, 3), dtype=np.uint8)
    renderer = Renderer(_manifest())
    made = renderer.render(frame, inst, lb).copy()
    assert inst.recorded_columns() is not None
    assert (instance_columns(inst).id_map is not None) == (paste_and_draw_code == "compiled")
    plain = list(inst)
    assert instance_columns(plain).id_map is None
    assert np.array_equal(Renderer(_manifest()).render(frame, plain, lb), made)
    inst.pop(0)  # the most confident instance goes
    assert inst.recorded_columns() is None
    assert np.array_equal(instance_columns(inst).labels, [i.label for i in plain[1:]])
    assert np.array_equal(Renderer(_manifest()).render(frame, inst, lb), Renderer(_manifest()).render(frame, plain[1:], lb))
    assert not np.array_equal(Renderer(_manifest()).render(frame, inst, lb), made)


def test_the_compiled_paste_records_which_instance_is_on_top_of_each_pixel(paste_and_draw_code):
    """InstanceColumns.id_map: k + 1 for the most confident instance k whose mask covers the pixel
    (the first in the list of equal scores), 0 where none does; only the first 255 are in it."""
    if paste_and_draw_code == "opencv":
        pytest.skip("only the compiled paste makes the map")
    lb = letterbox_for((1280, 720), (480, 320), "letterbox")
    out = _crowded_scene(n=300, seed=9)
    out["scores"][:] = np.round(out["scores"], 1)  # many equal scores
    inst = instances_from_outputs(out, lb, 0.3)
    assert len(inst) > 255
    want = np.zeros((720, 1280), np.int64)
    for k in range(min(len(inst), 255) - 1, -1, -1):  # the last first, so the first ends on top
        x, y = inst[k].origin
        mh, mw = inst[k].mask.shape
        region = want[y:y + mh, x:x + mw]
        region[inst[k].mask > 0] = k + 1
    got = instance_columns(inst).id_map
    assert got.dtype == np.uint8 and got.shape == (720, 1280)
    assert np.array_equal(got, want) and len(np.unique(got)) > 100


def test_of_equal_scores_the_first_instance_is_drawn_on_top(paste_and_draw_code):
    lb = letterbox_for((128, 128), (64, 64), "stretch")
    prob = np.ones((2, 1, 28, 28), np.float32)
    inst = instances_from_outputs(_outputs([[8, 8, 40, 40], [20, 20, 60, 60]], [0.8, 0.8], [1, 2], prob), lb)
    frame = np.zeros((128, 128, 3), np.uint8)
    colours = np.array([[255, 0, 0], [0, 0, 255]], np.uint8)
    from segrt.runtime.render_instances import InstancePainter

    painter = InstancePainter(colours)
    columns = instance_columns(inst)
    canvas = np.zeros_like(frame)
    painter.draw(inst, columns, painter.order(columns), frame, [(canvas, False)], 0.5, 1)
    assert inst[0].box[0] < inst[1].box[0]  # the stable order keeps the list's order
    assert canvas[50, 50].tolist() == [255, 0, 0]  # where both masks are, the first instance's colour


def test_paste_bands_cover_every_row_once_with_about_equal_work(paste_and_draw_code):
    from segrt.runtime.instances import _bands_of_equal_work, _paste_table

    if paste_and_draw_code == "opencv":
        pytest.skip("the bands split the compiled paste")
    rng = np.random.default_rng(2)
    x0, y0 = rng.integers(-50, 1900, 200), rng.integers(-50, 1000, 200)
    pixels = np.stack([x0, y0, x0 + rng.integers(1, 600, 200), y0 + rng.integers(1, 300, 200)], 1)
    table, _ = _paste_table(pixels.astype(np.int64), (1920, 1080))
    work = np.zeros(1080, np.int64)  # each frame row's mask pixels
    for x, y, _, _, r0, r1, c0, c1 in table.tolist():
        work[y:y + r1 - r0] += c1 - c0
    for n in (1, 2, 4, 7):
        bands = [b.tolist() for b in _bands_of_equal_work(table, 1080, n)]
        assert bands[0][0] == 0 and bands[-1][1] == 1080 and len(bands) == n
        assert all(a[1] == b[0] and a[0] <= a[1] for a, b in zip(bands, bands[1:]))
        shares = [work[a:b].sum() / work.sum() for a, b in bands]
        assert max(shares) < 1 / n + 0.05, shares  # within a few rows' work of an even split


def test_an_instance_renderer_compiles_every_kernel_when_made(paste_and_draw_code):
    """A stream never stalls on its first frame (or on a new array layout) to compile: each kernel
    has one signature, compiled (or loaded from numba's cache) when the renderer is made."""
    if paste_and_draw_code == "opencv":
        pytest.skip("about the compiled kernels")
    Renderer(_manifest())
    assert kernels._kernels and all(k._compiled is not None for k in kernels._kernels)
    for k in kernels._kernels:
        assert len(k._compiled.signatures) == 1, k.__name__
    lb = letterbox_for((1280, 720), (480, 320), "letterbox")
    inst = instances_from_outputs(_crowded_scene(n=40, seed=1), lb, 0.5)
    frame = np.zeros((720, 1280, 3), np.uint8)
    big = np.zeros((720, 2560, 3), np.uint8)
    Renderer(_manifest()).render(frame, inst, lb)
    Renderer(_manifest(), view="side-by-side").render(frame, inst, lb, out=big)  # strided halves of one canvas
    for k in kernels._kernels:
        assert len(k._compiled.signatures) == 1, k.__name__  # no variant compiled for other layouts


def test_a_kernel_compiles_without_a_writable_cache(paste_and_draw_code, monkeypatch):
    """Where numba finds no writable cache directory (a read-only install without a home
    directory) the kernel is compiled for this process alone instead of failing the stream."""
    if paste_and_draw_code == "opencv":
        pytest.skip("about the compiled kernels")
    import numba

    real = numba.njit
    calls = []

    def njit(*args, cache=False, **kw):
        calls.append(cache)
        if cache:
            raise RuntimeError("cannot cache function 'fill_weights': no locator available for file")
        return real(*args, cache=cache, **kw)

    kernel = kernels._Kernel(kernels.fill_weights._fn, kernels.fill_weights._signature)
    kernels._kernels.remove(kernel)
    monkeypatch.setattr(numba, "njit", njit)
    ids = np.array([[0, 1, 2]], np.uint8)
    out = np.zeros_like(ids)
    kernel(ids, np.array([[0, 0, 1]], np.uint8), out, np.uint8(9))
    assert calls == [True, False] and out.tolist() == [[0, 9, 255]]


def test_tags_keep_their_atlas_offsets_when_the_atlas_grows(paste_and_draw_code):
    """Every cached tag lives in one buffer, so a compiled call can paste a frame's tags; when the
    buffer grows, the tags made before keep their offsets and bytes."""
    from segrt.runtime.instance_tags import TagCache

    cache = TagCache([(10, 200, 30), (240, 240, 240)])
    cache.atlas = np.empty(4096, np.uint8)  # a few tags' worth: grows several times below
    corners = np.array([[5, 40, 60, 90]] * 60, np.int64)
    placed, table = cache.place(list(range(60)), [0.5 + i / 200 for i in range(60)], [i % 2 for i in range(60)],
                                corners, lambda label: f"class {label}", (0.5, 1))
    assert cache.atlas.size > 4096 and table.shape == (60, 5)
    for (tag, x, y), (offset, th, tw, tx, ty) in zip(placed, table.tolist()):
        assert (x, y) == (tx, ty) == (5, 40 - th) and tag.shape == (th, tw, 3)
        assert np.array_equal(cache.atlas[offset:offset + tag.size].reshape(tag.shape), tag)
    canvas = np.zeros((100, 120, 3), np.uint8)
    if paste_and_draw_code == "compiled":  # the last tag on top, clipped to the canvas's right edge
        kernels.paste_tags(canvas.reshape(100, 360), cache.atlas, table)
        tag, x, y = placed[-1]
        w = min(tag.shape[1], 120 - x)
        assert np.array_equal(canvas[y:y + tag.shape[0], x:x + w], tag[:, :w])


def test_the_runtime_imports_numba_only_to_compile():
    """numba adds ~0.15 s to an import: the runtime (pipeline, renderer, paste) imports it only when
    an instance renderer or paste first needs the kernels."""
    import subprocess
    import sys

    code = ("import sys; import segrt.runtime.pipeline, segrt.runtime.render, segrt.runtime.instances; "
            "assert 'numba' not in sys.modules, 'numba imported'; print('OK')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "OK", proc.stderr


def test_malformed_detections_are_dropped_and_non_finite_probabilities_read_as_their_limits(paste_and_draw_code):
    """A broken model's outputs: boxes with NaN or inf coordinates, or reaching far past the frame,
    and a NaN score are dropped (no integer geometry is made of them, no warning); a mask of +inf
    pastes full, one of NaN or -inf empty; the renderer draws what is left."""
    import warnings

    lb = letterbox_for((1280, 720), (480, 320), "letterbox")
    boxes = np.array([[np.nan, 10, 50, 60], [10, np.inf, 60, 90], [-np.inf, -np.inf, np.inf, np.inf],
                      [-1e9, -1e9, 1e9, 1e9], [1e12, 1e12, 2e12, 2e12],  # malformed: dropped
                      [10, 10, 200, 150], [210, 10, 300, 150], [310, 10, 400, 150], [20, 160, 120, 300]], np.float32)
    masks = np.full((9, 1, 28, 28), 0.9, np.float32)
    masks[5] = np.inf
    masks[6] = np.nan
    masks[7] = -np.inf
    scores = np.array([0.9, 0.9, 0.9, 0.95, 0.9, 0.8, 0.7, 0.6, np.nan], np.float32)
    out = _outputs(boxes, scores, np.arange(1, 10), masks)
    frame = np.random.default_rng(1).integers(0, 256, (720, 1280, 3), dtype=np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "invalid value encountered in cast"
        inst = instances_from_outputs(out, lb, 0.5)
        Renderer(_manifest()).render(frame, inst, lb)
    assert [i.label for i in inst] == [6, 7, 8]
    full, nan, negative = inst
    assert full.mask.all() and full.area == full.mask.size > 0
    assert not nan.mask.any() and nan.area == 0 and not negative.mask.any() and negative.area == 0
