"""Calibration frame sampling: even spread, de-duplication, coverage, held-out splits."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from segrt.calibration.sampling import (
    EVAL_SEED_OFFSET,
    FrameSampler,
    even_indices,
    plan_split,
)
from segrt.errors import CalibrationError, SourceError


def test_even_indices_spread_and_disjoint_ranges():
    idx = even_indices(0, 1000, 10)
    assert idx == [50, 150, 250, 350, 450, 550, 650, 750, 850, 950]
    assert even_indices(0, 5, 10) == [0, 1, 2, 3, 4]
    a, b = even_indices(0, 800, 20), even_indices(800, 1000, 5)
    assert max(a) < 800 <= min(b) and len(set(a)) == 20
    assert even_indices(10, 10, 3) == []


def test_synthetic_is_sampled_by_seeking_evenly():
    sampler = FrameSampler("synthetic://?size=64x48&frames=300&seed=2", 12)
    frames = list(sampler)
    cov = sampler.coverage
    assert cov.mode == "seek" and cov.kept == len(frames) == 12
    assert [f.index for f in frames] == cov.indices == even_indices(0, 300, 12)
    assert all(f.label is not None for f in frames)
    assert 0 < cov.diversity < 1
    assert len(cov.thumbnails_sha256) == 64
    # deterministic: the same set gives the same hash
    again = FrameSampler("synthetic://?size=64x48&frames=300&seed=2", 12)
    list(again)
    assert again.coverage.thumbnails_sha256 == cov.thumbnails_sha256


def _folder(tmp_path, images):
    d = tmp_path / "imgs"
    d.mkdir(parents=True)
    for i, img in enumerate(images):
        cv2.imwrite(str(d / f"{i:03d}.png"), img)
    return d


def test_near_duplicates_are_dropped_and_counted(tmp_path):
    rng = np.random.default_rng(0)
    distinct = [rng.integers(0, 256, (40, 60, 3), dtype=np.uint8) for _ in range(4)]
    noisy_copy = np.clip(distinct[0].astype(int) + rng.integers(-1, 2, distinct[0].shape), 0, 255).astype(np.uint8)
    images = [distinct[0], distinct[0].copy(), distinct[1], noisy_copy, distinct[2], distinct[3]]
    d = _folder(tmp_path, images)
    sampler = FrameSampler(str(d), 10)
    kept = list(sampler)
    assert sampler.coverage.read == 6
    assert sampler.coverage.dropped_duplicates == 2
    assert [f.index for f in kept] == [0, 2, 4, 5]
    off = FrameSampler(str(d), 10, dedup_threshold=0)
    assert len(list(off)) == 6


def test_diversity_is_zero_for_a_static_scene_and_higher_for_varied(tmp_path):
    grey = np.full((30, 40, 3), 128, np.uint8)
    varied = [np.full((30, 40, 3), v, np.uint8) for v in (0, 80, 160, 240)]
    s1 = FrameSampler(str(_folder(tmp_path / "a", [grey] * 5)), 5)
    list(s1)
    assert s1.coverage.kept == 1 and s1.coverage.dropped_duplicates == 4 and s1.coverage.diversity is None
    s2 = FrameSampler(str(_folder(tmp_path / "b", varied)), 5)
    list(s2)
    # mean |diff| between 0, 80, 160, 240 over all pairs = 133.3 / 255
    assert s2.coverage.diversity == pytest.approx((80 * 3 + 160 * 2 + 240) / 6 / 255, rel=1e-3)


def test_index_range_restricts_sampling(tmp_path):
    sampler = FrameSampler("synthetic://?size=64x48&frames=100&seed=1", 5, index_range=(80, 100))
    idx = [f.index for f in sampler]
    assert idx and all(80 <= i < 100 for i in idx)
    assert sampler.coverage.index_range == (80, 100)


def test_dense_indices_of_a_video_are_read_sequentially(tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    rng = np.random.default_rng(0)
    for _ in range(20):
        writer.write(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    writer.release()
    sampler = FrameSampler(str(path), 10)
    idx = [f.index for f in sampler]
    assert sampler.coverage.mode == "sequential" and idx == even_indices(0, 20, 10)
    sparse = FrameSampler(str(path), 3)
    assert [f.index for f in sparse] == even_indices(0, 20, 3) and sparse.coverage.mode == "seek"
    # synthetic frames are a pure function of the index: always seek, never render skipped ones
    synth = FrameSampler("synthetic://?size=64x48&frames=20&seed=1", 10)
    assert [f.index for f in synth] == even_indices(0, 20, 10) and synth.coverage.mode == "seek"


def test_live_source_takes_every_kth_frame():
    # a paced synthetic camera at 100 fps; samples 0.03 s apart -> every 3rd frame
    sampler = FrameSampler("synthetic://?size=64x48&fps=100&frames=100000&live=1", 4, live_interval_s=0.03,
                           dedup_threshold=0)
    frames = list(sampler)
    assert sampler.coverage.mode == "live" and len(frames) == 4
    gaps = np.diff([f.index for f in frames])
    assert (gaps >= 3).all()


def test_plan_split_synthetic_uses_another_seed():
    plan = plan_split("synthetic://?size=64x48&frames=50&seed=4", None, 20, 10)
    assert plan.eval_uri.endswith(f"seed={4 + EVAL_SEED_OFFSET}") and "size=64x48" in plan.eval_uri
    assert plan.calib_range is None and "seed" in plan.how
    default_seed = plan_split("synthetic://?size=64x48", None, 20, 10)
    assert f"seed={EVAL_SEED_OFFSET}" in default_seed.eval_uri
    # held-out seeds stay below the demo model's training seeds (>= 10000)
    high = plan_split("synthetic://?size=64x48&seed=9000", None, 20, 10)
    assert high.eval_uri.endswith(f"seed={(9000 + EVAL_SEED_OFFSET) % 10000}")


def test_plan_split_file_source_holds_out_the_tail(tmp_path):
    rng = np.random.default_rng(1)
    d = _folder(tmp_path, [rng.integers(0, 256, (20, 30, 3), dtype=np.uint8) for _ in range(40)])
    plan = plan_split(str(d), None, calib_frames=30, eval_frames=6)
    assert plan.calib_range == (0, 34) and plan.eval_range == (34, 40)
    small = plan_split(str(d), None, calib_frames=200, eval_frames=50)  # not enough: proportional split
    assert small.eval_range == (32, 40) and small.calib_range == (0, 32)
    explicit = plan_split(str(d), "synthetic://?size=30x20", 10, 5)
    assert explicit.eval_uri == "synthetic://?size=30x20" and explicit.eval_range is None


def test_bad_sources(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError):
        list(FrameSampler(str(tmp_path / "empty"), 3))
    with pytest.raises(SourceError):
        list(FrameSampler(str(tmp_path / "missing.mp4"), 3))
    with pytest.raises(CalibrationError):
        FrameSampler("synthetic://?size=64x48", 0)
    one = _folder(tmp_path, [np.zeros((8, 8, 3), np.uint8)])
    with pytest.raises(CalibrationError):
        plan_split(str(one), None, 10, 5)


def test_labels_are_scored_only_when_their_classes_are_the_models():
    from segrt.calibration.evaluate import collect_eval_set
    from segrt.runtime.manifest import InputSpec, Manifest, OutputSpec, PreprocessSpec, default_palette
    from segrt.runtime.synthetic import SYNTHETIC_CLASSES

    def manifest(classes):
        return Manifest(name="t", classes=classes, palette=default_palette(len(classes)),
                        input=InputSpec(name="frame", height=32, width=64), preprocess=PreprocessSpec(),
                        output=OutputSpec(kind="mask", names=("mask",), num_classes=len(classes)))

    uri = "synthetic://?size=128x64&frames=20&seed=3"
    same = collect_eval_set(manifest(SYNTHETIC_CLASSES), uri, 4)
    assert same.has_labels and same.labels[0].shape == (32, 64)
    voc = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus")
    other = collect_eval_set(manifest(voc), uri, 4)
    assert len(other) == 4 and not other.has_labels
