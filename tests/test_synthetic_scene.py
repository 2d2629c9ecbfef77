"""synthetic:// scene: determinism, random access, label/image consistency, class coverage, query parsing."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from segrt.errors import ConfigError
from segrt.runtime.synthetic import (
    SYNTHETIC_CLASSES,
    SYNTHETIC_PALETTE,
    SyntheticConfig,
    SyntheticScene,
    resize_label,
    synthetic_config_from_query,
)
from segrt.runtime import synthetic as synth

SMALL = dict(width=320, height=180)


def test_classes_and_palette_are_consistent():
    assert SYNTHETIC_CLASSES[0] == "background"
    assert 2 <= len(SYNTHETIC_CLASSES) <= 8
    assert len(SYNTHETIC_PALETTE) == len(SYNTHETIC_CLASSES)
    assert len(set(SYNTHETIC_PALETTE)) == len(SYNTHETIC_PALETTE)
    for colour in SYNTHETIC_PALETTE:
        assert len(colour) == 3 and all(0 <= c <= 255 for c in colour)


def test_render_shapes_and_types():
    scene = SyntheticScene(SyntheticConfig(**SMALL))
    image, label = scene.render(0)
    assert image.shape == (180, 320, 3) and image.dtype == np.uint8
    assert label.shape == (180, 320) and label.dtype == np.uint8
    assert int(label.max()) < len(SYNTHETIC_CLASSES)


def test_deterministic_per_seed_and_random_access():
    cfg = SyntheticConfig(**SMALL, seed=3)
    a, b = SyntheticScene(cfg), SyntheticScene(cfg)
    # b renders in a different order (seeking back and forth): frames must not depend on history.
    for i in (250, 7, 120):
        b.render(i)
    for i in (7, 120, 250, 0):
        ia, la = a.render(i)
        ib, lb = b.render(i)
        np.testing.assert_array_equal(ia, ib)
        np.testing.assert_array_equal(la, lb)
    # render_into writes the same frame into caller-owned buffers.
    image = np.full((180, 320, 3), 7, np.uint8)
    label = np.full((180, 320), 9, np.uint8)
    a.render_into(120, image, label)
    ref_i, ref_l = b.render(120)
    np.testing.assert_array_equal(image, ref_i)
    np.testing.assert_array_equal(label, ref_l)


def test_seeds_differ_and_frames_move():
    s0 = SyntheticScene(SyntheticConfig(**SMALL, seed=0))
    s1 = SyntheticScene(SyntheticConfig(**SMALL, seed=1))
    i0, l0 = s0.render(30)
    i1, l1 = s1.render(30)
    assert np.mean(i0 != i1) > 0.5
    # Consecutive frames differ a little (motion), frames a second apart differ a lot.
    _, l31 = s0.render(31)
    _, l60 = s0.render(60)
    changed_1 = np.mean(l0 != l31)
    changed_30 = np.mean(l0 != l60)
    assert 0 < changed_1 < changed_30


def test_no_objects_means_all_background():
    scene = SyntheticScene(SyntheticConfig(**SMALL, objects=0))
    for i in (0, 100):
        _, label = scene.render(i)
        assert not label.any()


def test_labels_are_the_drawn_shapes():
    """Without noise, blur and clutter, every labelled pixel shows its class's colour family.

    Each foreground class is painted in its own hue range with high saturation, the background
    in muted colours; so a label that did not match the drawn shapes (shifted, wrong z-order, a
    hole filled in) would put the wrong hue under the label.
    """
    cfg = SyntheticConfig(width=640, height=360, seed=5, noise=0.0, blur=0.0, clutter=0)
    scene = SyntheticScene(cfg)
    checked = set()
    for index in range(0, 300, 25):
        image, label = scene.render(index)
        hsv = cv2.cvtColor(image, cv2.COLOR_BGR2HSV)
        # Edge pixels mix two surfaces after the texture warp; judge the interior.
        for cls in range(1, len(SYNTHETIC_CLASSES)):
            inside = cv2.erode((label == cls).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
            if inside.sum() < 200:
                continue
            checked.add(cls)
            lo, hi = synth._FAMILIES[cls]["hue"]
            hue = hsv[..., 0][inside].astype(int)
            # Lighting and white-balance drift nudge hues a little; dark texels are noisier.
            bright = hsv[..., 2][inside] > 60
            dist = np.minimum(np.abs(hue - np.clip(hue, lo, hi)), 180 - np.abs(hue - np.clip(hue, lo, hi)))
            assert np.mean(dist[bright] <= 6) > 0.95, (index, SYNTHETIC_CLASSES[cls])
            assert np.median(hsv[..., 1][inside]) > 90, (index, SYNTHETIC_CLASSES[cls])
        bg = cv2.erode((label == 0).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        assert np.percentile(hsv[..., 1][bg], 95) < 110, index
    assert checked == set(range(1, len(SYNTHETIC_CLASSES)))


def test_ring_holes_show_what_is_behind():
    """A ring's hole is not labelled ring: the pixels there belong to whatever is behind."""
    cfg = SyntheticConfig(width=480, height=270, seed=2, clutter=0)
    scene = SyntheticScene(cfg)
    ring = SYNTHETIC_CLASSES.index("ring")
    found = False
    for index in range(0, 300, 10):
        _, label = scene.render(index)
        mask = (label == ring).astype(np.uint8)
        filled = mask.copy()
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(filled, contours, -1, 1, -1)
        holes = (filled == 1) & (mask == 0)
        if holes.sum() > 100:
            found = True
            assert not (label[holes] == ring).any()
    assert found, "no ring with a visible hole in 30 frames"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_all_classes_appear_and_background_dominates(seed):
    scene = SyntheticScene(SyntheticConfig(**SMALL, seed=seed))
    counts = np.zeros(len(SYNTHETIC_CLASSES))
    bg_fraction = []
    touches_border = 0
    for index in range(0, 300, 10):
        _, label = scene.render(index)
        counts += np.bincount(label.ravel(), minlength=len(SYNTHETIC_CLASSES))
        bg_fraction.append(np.mean(label == 0))
        edge = np.concatenate([label[0], label[-1], label[:, 0], label[:, -1]])
        touches_border += bool(edge.any())
    share = counts / counts.sum()
    assert (share[1:] > 0.003).all(), share  # every class is present in a 10 s sequence
    assert 0.6 < share[0] < 0.92, share  # background dominates, not overwhelmingly
    assert min(bg_fraction) > 0.3
    assert touches_border > 0  # objects enter and leave through the frame edges


def test_geometry_is_resolution_independent():
    big = SyntheticScene(SyntheticConfig(width=1280, height=720, seed=4))
    small = SyntheticScene(SyntheticConfig(width=320, height=180, seed=4))
    for index in (15, 150):
        _, lb = big.render(index)
        _, ls = small.render(index)
        agree = np.mean(resize_label(lb, 320, 180) == ls)
        assert agree > 0.97, (index, agree)


def test_resize_label_keeps_class_ids():
    label = np.zeros((1080, 1920), np.uint8)
    label[100:500, 300:900] = 3
    label[600:700, 1000:1900] = 5
    small = resize_label(label, 512, 256)
    assert small.shape == (256, 512)
    assert set(np.unique(small)) == {0, 3, 5}
    # Nearest-exact samples pixel centres: the 3-region maps to rows 100/4.21875.. 500/4.21875.
    rows = np.where(small[:, 120] == 3)[0]
    assert abs(rows[0] - 100 * 256 / 1080) < 1 and abs(rows[-1] + 1 - 500 * 256 / 1080) < 1


def test_noise_and_blur_change_the_image_not_the_label():
    base = dict(**SMALL, seed=8)
    clean = SyntheticScene(SyntheticConfig(**base, noise=0.0, blur=0.0))
    noisy = SyntheticScene(SyntheticConfig(**base, noise=8.0, blur=1.0))
    ic, lc = clean.render(40)
    inn, ln = noisy.render(40)
    np.testing.assert_array_equal(lc, ln)
    diff = inn.astype(int) - ic.astype(int)
    assert 1.0 < np.abs(diff).mean() < 30.0
    # Blur lowers high-frequency energy even with noise on top.
    lap_clean = cv2.Laplacian(cv2.cvtColor(ic, cv2.COLOR_BGR2GRAY), cv2.CV_32F).var()
    blurred_quiet = SyntheticScene(SyntheticConfig(**base, noise=0.0, blur=1.0)).render(40)[0]
    lap_blur = cv2.Laplacian(cv2.cvtColor(blurred_quiet, cv2.COLOR_BGR2GRAY), cv2.CV_32F).var()
    assert lap_blur < lap_clean


def test_lighting_changes_over_time():
    scene = SyntheticScene(SyntheticConfig(**SMALL, seed=6, objects=0, noise=0.0, blur=0.0))
    means = [scene.render(i)[0].mean() for i in range(0, 300, 15)]
    assert max(means) - min(means) > 10  # global gain drift


def test_render_into_rejects_bad_buffers_and_indices():
    scene = SyntheticScene(SyntheticConfig(**SMALL))
    good_i = np.empty((180, 320, 3), np.uint8)
    good_l = np.empty((180, 320), np.uint8)
    with pytest.raises(ValueError):
        scene.render_into(0, np.empty((180, 321, 3), np.uint8), good_l)
    with pytest.raises(ValueError):
        scene.render_into(0, good_i, np.empty((180, 320), np.int32))
    with pytest.raises(ValueError):
        scene.render_into(0, np.empty((320, 180, 3), np.uint8).transpose(1, 0, 2), good_l)
    with pytest.raises(IndexError):
        scene.render(-1)


def test_query_parsing():
    cfg = synthetic_config_from_query("size=1920x1080&fps=25&frames=40&seed=7&objects=3&noise=2.5&blur=0&clutter=5")
    assert (cfg.width, cfg.height, cfg.fps, cfg.frames, cfg.seed) == (1920, 1080, 25.0, 40, 7)
    assert (cfg.objects, cfg.noise, cfg.blur, cfg.clutter) == (3, 2.5, 0.0, 5)
    assert synthetic_config_from_query("") == SyntheticConfig()
    assert synthetic_config_from_query("?seed=2").seed == 2
    assert synthetic_config_from_query("width=640&height=480") == SyntheticConfig(width=640, height=480)


@pytest.mark.parametrize(
    "query, needle",
    [
        ("colour=red", "'colour'"),
        ("size=1920", "size"),
        ("size=axb", "size"),
        ("fps=fast", "fps"),
        ("frames=1.5", "frames"),
        ("seed=1&seed=2", "twice"),
        ("size=640x480&width=10", "either"),
        ("noise=-1", "noise"),
        ("blur=2", "blur"),
        ("width=8", "width"),
        ("fps=0", "fps"),
        ("objects=100", "objects"),
        ("seed", "seed"),
    ],
)
def test_query_errors_are_config_errors(query, needle):
    with pytest.raises(ConfigError) as info:
        synthetic_config_from_query(query)
    assert needle in str(info.value)


def test_unknown_key_lists_the_valid_keys():
    with pytest.raises(ConfigError) as info:
        synthetic_config_from_query("size=64x64&speed=3")
    msg = str(info.value)
    assert "'speed'" in msg
    for key in ("size", "fps", "frames", "seed", "objects", "noise", "blur"):
        assert key in msg


@pytest.mark.parametrize("field, value", [("width", 0), ("height", 10**5), ("fps", float("nan")),
                                          ("frames", 0), ("seed", -1), ("objects", 1.5), ("noise", "4")])
def test_config_validation(field, value):
    with pytest.raises(ConfigError):
        SyntheticConfig(**{field: value})


# -- drawing scale (detail) and lazy ground truth ---------------------------------------------

def test_auto_detail_draws_large_frames_at_half_size():
    assert SyntheticConfig(width=1920, height=1080).draw_size == (960, 540)
    assert SyntheticConfig(width=1280, height=720).draw_size == (1280, 720)
    assert SyntheticConfig(width=1920, height=1080, detail=1.0).draw_size == (1920, 1080)
    assert SyntheticConfig(width=1920, height=1080, detail=0.25).draw_size == (480, 270)
    assert synthetic_config_from_query("size=1920x1080&detail=1").draw_size == (1920, 1080)
    with pytest.raises(ConfigError, match="detail"):
        SyntheticConfig(detail=0.1)


def test_half_detail_frame_matches_full_detail_scene():
    """Drawing at half size and resizing shows the same scene: same labels, close pixels."""
    half = SyntheticScene(SyntheticConfig(width=1920, height=1080, seed=3, noise=0, blur=0))
    full = SyntheticScene(SyntheticConfig(width=1920, height=1080, seed=3, noise=0, blur=0, detail=1.0))
    for index in (10, 200):
        ih, lh = half.render(index)
        iF, lf = full.render(index)
        assert ih.shape == iF.shape == (1080, 1920, 3) and lh.shape == lf.shape == (1080, 1920)
        assert np.mean(lh == lf) > 0.98
        # Pixel values differ at edges and in fine texture only.
        diff = np.abs(ih.astype(np.int16) - iF.astype(np.int16))
        assert np.median(diff) <= 6, np.median(diff)


def test_noise_strength_is_measured_at_the_frame_size():
    """Noise drawn before the resize is scaled so the delivered frame still has std ~ config.noise."""
    for detail in (0.5, 1.0):
        clean = SyntheticScene(SyntheticConfig(width=1280, height=720, seed=5, noise=0, blur=0, detail=detail))
        noisy = SyntheticScene(SyntheticConfig(width=1280, height=720, seed=5, noise=8, blur=0, detail=detail))
        a, _ = clean.render(7)
        b, _ = noisy.render(7)
        d = b.astype(np.float32) - a.astype(np.float32)
        inner = d[(a > 20).all(-1) & (a < 235).all(-1)]  # away from clipping
        assert 6.5 < inner.std() < 9.5, (detail, inner.std())


def test_label_at_is_the_ground_truth_of_the_rendered_frame():
    for size, detail in (((1920, 1080), 0.0), ((320, 180), 0.0), ((640, 360), 0.5)):
        cfg = SyntheticConfig(width=size[0], height=size[1], seed=2, detail=detail)
        scene = SyntheticScene(cfg)
        image = np.empty((size[1], size[0], 3), np.uint8)
        label = np.empty((size[1], size[0]), np.uint8)
        for index in (30, 31, 400):
            scene.render_into(index, image, label)
            small = scene.label_at(index)
            assert small.shape == cfg.draw_size[::-1]
            np.testing.assert_array_equal(resize_label(small, *size), label)
            alone = np.empty_like(image)
            scene.render_into(index, alone)  # without ground truth: the same picture
            np.testing.assert_array_equal(alone, image)
