"""Train the shipped demo model: the project's U-Net on ``synthetic://`` scenes.

    python -m segrt.tools.train_demo --out weights --steps 2400 --seed 0

Reproducible by construction: training frames come from seeds >= ``TRAIN_SEED_BASE`` (10000),
drawn from ``--seed``; every seed below that is held out (the demo, calibration and accuracy gates
use small seeds). Frames are rendered at 1920x1080, 1280x720 or 960x540 and brought to the model
size exactly as the runtime does it: a stretch with ``cv2.INTER_LINEAR`` (labels with
``cv2.INTER_NEAREST_EXACT``, which samples the same pixel centres), BGR->RGB, then
``(x - mean) / std`` on the 0..255 scale. The net trains on random crops of those model-size
frames (it is fully convolutional), with AdamW, a one-cycle schedule and cross-entropy + soft
Dice. At the end it reports mIoU on held-out seeds and writes ``<out>/<name>.pth`` (fp32
state_dict) and ``<out>/<name>.json`` (architecture, classes, palette, preprocessing, training
provenance, metrics), both atomically.
"""
from __future__ import annotations

import argparse
import io
import math
import os
import platform
import sys
import time

# OpenMP threads that spin at barriers waste most of their time on a shared, oversubscribed
# CPU: measured here, a training step took 8 s with the default policy and 0.6 s with PASSIVE.
# It must be set before torch loads its OpenMP runtime, hence before the import.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import cv2
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from segrt.export.models.unet import UNet
from segrt.runtime.fsutil import ensure_writable_dir, write_bytes_atomic, write_json_atomic
from segrt.runtime.synthetic import (
    SYNTHETIC_CLASSES,
    SYNTHETIC_PALETTE,
    SyntheticConfig,
    SyntheticScene,
    resize_label,
)

TRAIN_SEED_BASE = 10_000  # training seeds are >= this; everything below is held out
TRAIN_SIZES = ((1920, 1080), (1280, 720), (960, 540))  # (w, h) rendered for training
TRAIN_SIZE_WEIGHTS = (0.2, 0.4, 0.4)
DEFAULT_EVAL_SEEDS = (0, 1, 2, 3, 4, 5, 6, 7)
DEFAULT_EVAL_SIZES = ((1920, 1080), (1280, 720))


# ------------------------------------------------------------------------------------------
# Preprocessing: the runtime's, in numpy (so train and deploy agree pixel for pixel).


def model_input_from_frame(frame_bgr: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Stretch a BGR frame to the model size (cv2.INTER_LINEAR) and return it as RGB uint8 HWC."""
    h, w = size_hw
    resized = cv2.resize(frame_bgr, (w, h), interpolation=cv2.INTER_LINEAR)
    return cv2.cvtColor(resized, cv2.COLOR_BGR2RGB)


def tensor_from_rgb(rgb: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 (N,)H,W,3 RGB -> float32 N,3,H,W normalised with mean/std on the 0..255 scale."""
    x = torch.from_numpy(np.ascontiguousarray(rgb)).float()
    if x.ndim == 3:
        x = x[None]
    x = (x - torch.tensor(mean).view(1, 1, 1, 3)) / torch.tensor(std).view(1, 1, 1, 3)
    return x.permute(0, 3, 1, 2).contiguous()


# ------------------------------------------------------------------------------------------
# Metrics


def confusion_update(conf: np.ndarray, label: np.ndarray, pred: np.ndarray) -> None:
    """Accumulate a CxC confusion matrix (rows: truth, columns: prediction)."""
    c = conf.shape[0]
    conf += np.bincount(label.ravel().astype(np.int64) * c + pred.ravel(), minlength=c * c).reshape(c, c)


def iou_from_confusion(conf: np.ndarray) -> np.ndarray:
    """Per-class IoU; NaN for a class absent from both truth and prediction."""
    tp = np.diag(conf).astype(np.float64)
    union = conf.sum(0) + conf.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / np.maximum(union, 1), np.nan)


# ------------------------------------------------------------------------------------------
# Data: an endless stream of (rgb, label) crops rendered on the fly in a worker process.


@dataclass(frozen=True)
class DataSpec:
    input_hw: tuple[int, int]
    crop_hw: tuple[int, int]
    seed: int
    frames_per_scene: int = 48  # frames drawn from a scene before it is replaced in the pool
    pool: int = 6  # scenes alive at once (their object textures are cached)
    crops_per_frame: int = 4  # a 128x256 crop is a quarter of a 256x512 frame


class SyntheticCrops(torch.utils.data.IterableDataset):
    """Random crops of model-size frames from training seeds (each worker its own stream)."""

    def __init__(self, spec: DataSpec) -> None:
        super().__init__()
        self.spec = spec

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        info = torch.utils.data.get_worker_info()
        wid = info.id if info is not None else 0
        s = self.spec
        rng = np.random.default_rng([s.seed, wid, 7])
        ih, iw = s.input_hw
        ch, cw = s.crop_hw

        def new_scene() -> tuple[SyntheticScene, list[int]]:
            w, h = TRAIN_SIZES[rng.choice(len(TRAIN_SIZES), p=TRAIN_SIZE_WEIGHTS)]
            seed = TRAIN_SEED_BASE + int(rng.integers(0, 2**31 - 1 - TRAIN_SEED_BASE))
            # A window of nearby frames: objects' textures are reused, motion still varies.
            start = int(rng.integers(0, 3000))
            return SyntheticScene(SyntheticConfig(width=w, height=h, seed=seed)), [start, 0]

        pool = [new_scene() for _ in range(s.pool)]
        while True:
            k = int(rng.integers(0, s.pool))
            scene, state = pool[k]
            index = state[0] + int(rng.integers(0, 240))
            image, label = scene.render(index)
            rgb = model_input_from_frame(image, s.input_hw)
            lab = resize_label(label, iw, ih)
            for _ in range(s.crops_per_frame):
                y = int(rng.integers(0, ih - ch + 1))
                x = int(rng.integers(0, iw - cw + 1))
                yield rgb[y:y + ch, x:x + cw].copy(), lab[y:y + ch, x:x + cw].copy()
            state[1] += 1
            if state[1] >= s.frames_per_scene:
                pool[k] = new_scene()


def _collate(batch: list[tuple[np.ndarray, np.ndarray]]) -> tuple[torch.Tensor, torch.Tensor]:
    rgb = torch.from_numpy(np.stack([b[0] for b in batch]))
    lab = torch.from_numpy(np.stack([b[1] for b in batch]).astype(np.int64))
    return rgb, lab


# ------------------------------------------------------------------------------------------
# Training


def dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Soft multi-class Dice over the batch (classes absent from the batch count fully)."""
    prob = logits.softmax(1)
    onehot = F.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2).to(prob.dtype)
    inter = (prob * onehot).sum((0, 2, 3))
    denom = prob.sum((0, 2, 3)) + onehot.sum((0, 2, 3))
    return 1.0 - ((2 * inter + eps) / (denom + eps)).mean()


def channel_stats(seeds: Sequence[int], size_hw: tuple[int, int], frames: int = 4) -> tuple[list[float], list[float]]:
    """RGB mean/std (0..255) over a few training frames; rounded so the json reads cleanly."""
    acc = []
    for seed in seeds:
        scene = SyntheticScene(SyntheticConfig(width=960, height=540, seed=seed))
        for i in range(frames):
            image, _ = scene.render(i * 97)
            acc.append(model_input_from_frame(image, size_hw).reshape(-1, 3).astype(np.float64))
    px = np.concatenate(acc)
    return [round(float(v), 1) for v in px.mean(0)], [round(float(v), 1) for v in px.std(0)]


@torch.no_grad()
def evaluate(
    model: nn.Module,
    mean: Sequence[float],
    std: Sequence[float],
    input_hw: tuple[int, int],
    seeds: Sequence[int],
    frames_per_seed: int,
    sizes: Sequence[tuple[int, int]] = DEFAULT_EVAL_SIZES,
    stream_frames: int = 300,
) -> dict:
    """mIoU at model resolution over ``frames_per_seed`` evenly spaced frames of each seed.

    Seed ``seeds[i]`` is rendered at ``sizes[i % len(sizes)]`` (default config otherwise), so
    the held-out set covers both 1080p and 720p sources.
    """
    model.eval()
    n = len(SYNTHETIC_CLASSES)
    conf = np.zeros((n, n), np.int64)
    h, w = input_hw
    count = 0
    for i, seed in enumerate(seeds):
        fw, fh = sizes[i % len(sizes)]
        scene = SyntheticScene(SyntheticConfig(width=fw, height=fh, seed=seed, frames=stream_frames))
        for j in range(frames_per_seed):
            index = (j * stream_frames) // frames_per_seed
            image, label = scene.render(index)
            x = tensor_from_rgb(model_input_from_frame(image, input_hw), mean, std)
            pred = model(x).argmax(1)[0].numpy().astype(np.uint8)
            confusion_update(conf, resize_label(label, w, h), pred)
            count += 1
    iou = iou_from_confusion(conf)
    return {
        "miou_heldout": float(np.nanmean(iou)),
        "per_class_iou": {c: (None if math.isnan(v) else round(float(v), 4)) for c, v in zip(SYNTHETIC_CLASSES, iou, strict=True)},
        "eval_seeds": [int(s) for s in seeds],
        "eval_sizes": [f"{sw}x{sh}" for sw, sh in sizes],
        "eval_frames": count,
        "eval_resolution": "model input (labels resized with INTER_NEAREST_EXACT)",
    }


def _parse_hw(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"expected HxW like 256x512, got {text!r}")
    return int(parts[0]), int(parts[1])


def _parse_seeds(text: str) -> tuple[int, ...]:
    out: list[int] = []
    for part in text.split(","):
        if "-" in part:
            a, b = part.split("-", 1)
            out.extend(range(int(a), int(b) + 1))
        elif part:
            out.append(int(part))
    if not out or any(s >= TRAIN_SEED_BASE or s < 0 for s in out):
        raise argparse.ArgumentTypeError(f"eval seeds must be in [0, {TRAIN_SEED_BASE}), got {text!r}")
    return tuple(out)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m segrt.tools.train_demo", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="weights", help="output directory (default: weights)")
    ap.add_argument("--name", default="demo_unet", help="file stem of the .pth/.json (default: demo_unet)")
    ap.add_argument("--steps", type=int, default=2400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--input-size", type=_parse_hw, default=(256, 512), help="model HxW (default 256x512)")
    ap.add_argument("--crop", type=_parse_hw, default=(128, 256), help="training crop HxW (default 128x256)")
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--base-width", type=int, default=8)
    ap.add_argument("--lr", type=float, default=4e-3)
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    ap.add_argument("--workers", type=int, default=1, help="DataLoader worker processes (0 = inline)")
    ap.add_argument("--eval-seeds", type=_parse_seeds, default=DEFAULT_EVAL_SEEDS, help="e.g. 0-7")
    ap.add_argument("--eval-frames", type=int, default=12, help="evaluated frames per held-out seed")
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--eval-every", type=int, default=0,
                    help="quick held-out check every N steps (monitoring only; 0 = off)")
    return ap


def train(args: argparse.Namespace) -> dict:
    """Train, evaluate, write ``<out>/<name>.pth`` and ``.json``; returns the json dict."""
    out = ensure_writable_dir(args.out)
    if args.steps < 1:
        raise SystemExit("--steps must be >= 1")
    ih, iw = args.input_size
    ch, cw = args.crop
    stride = 2**args.depth
    if ih % stride or iw % stride or ch % stride or cw % stride or ch > ih or cw > iw:
        raise SystemExit(f"--input-size and --crop must be multiples of {stride} with crop <= input")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    cv2.setNumThreads(1)
    t_start = time.perf_counter()

    stat_seeds = [TRAIN_SEED_BASE + args.seed * 1000 + k for k in range(4)]
    mean, std = channel_stats(stat_seeds, (ih, iw))
    n_classes = len(SYNTHETIC_CLASSES)
    model = UNet(n_classes, depth=args.depth, base_width=args.base_width, bilinear=True)
    model = model.to(memory_format=torch.channels_last)  # ~2x faster convs on CPU
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.steps,
                                                pct_start=0.1, div_factor=20, final_div_factor=200)
    data = SyntheticCrops(DataSpec(input_hw=(ih, iw), crop_hw=(ch, cw), seed=args.seed))
    loader = torch.utils.data.DataLoader(data, batch_size=args.batch, num_workers=args.workers,
                                         collate_fn=_collate, persistent_workers=False,
                                         prefetch_factor=4 if args.workers else None)
    mean_t = torch.tensor(mean).view(1, 3, 1, 1)
    std_t = torch.tensor(std).view(1, 3, 1, 1)
    print(f"train_demo: UNet depth={args.depth} base_width={args.base_width} "
          f"params={sum(p.numel() for p in model.parameters())} input={ih}x{iw} crop={ch}x{cw} "
          f"batch={args.batch} steps={args.steps} mean={mean} std={std}", flush=True)

    model.train()
    running = 0.0
    t_log = time.perf_counter()
    for step, (rgb, lab) in enumerate(loader, start=1):
        x = ((rgb.permute(0, 3, 1, 2).float() - mean_t) / std_t).contiguous(memory_format=torch.channels_last)
        logits = model(x)
        loss = F.cross_entropy(logits, lab) + 0.5 * dice_loss(logits, lab)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        running += loss.item()
        if step % args.log_every == 0 or step == args.steps:
            dt = time.perf_counter() - t_log
            print(f"step {step}/{args.steps} loss {running / args.log_every:.4f} "
                  f"lr {sched.get_last_lr()[0]:.2e} {dt / args.log_every:.2f}s/step "
                  f"elapsed {time.perf_counter() - t_start:.0f}s", flush=True)
            running, t_log = 0.0, time.perf_counter()
        if args.eval_every and step % args.eval_every == 0 and step < args.steps:
            quick = evaluate(model, mean, std, (ih, iw), args.eval_seeds[:2], 4)
            print(f"  quick held-out mIoU {quick['miou_heldout']:.4f} {quick['per_class_iou']}", flush=True)
            model.train()
        if step >= args.steps:
            break
    train_s = time.perf_counter() - t_start

    model = model.to(memory_format=torch.contiguous_format).eval()
    metrics = evaluate(model, mean, std, (ih, iw), args.eval_seeds, args.eval_frames)
    print(f"held-out mIoU {metrics['miou_heldout']:.4f} per class {metrics['per_class_iou']}", flush=True)

    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    buf = io.BytesIO()
    torch.save(state, buf)
    meta = {
        "arch": "unet",
        "params": {"depth": args.depth, "base_width": args.base_width, "bilinear": True},
        "classes": list(SYNTHETIC_CLASSES),
        "palette": [list(c) for c in SYNTHETIC_PALETTE],
        "input_size": [ih, iw],
        "resize": "stretch",
        "mean": mean,
        "std": std,
        "color_order": "RGB",
        "train": {
            "command": "python -m segrt.tools.train_demo " + " ".join(args.argv),
            "seeds": {"first": TRAIN_SEED_BASE, "last": 2**31 - 2,
                      "note": f"random scenes drawn with --seed {args.seed}; seeds < {TRAIN_SEED_BASE} never used"},
            "seed": args.seed,
            "steps": args.steps,
            "batch": args.batch,
            "crop": [ch, cw],
            "lr": args.lr,
            "time_s": round(train_s, 1),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "threads": args.threads,
            "parameters": int(sum(p.numel() for p in model.parameters())),
            "state_dict_bytes": buf.getbuffer().nbytes,
        },
        "metrics": metrics,
    }
    # Weights first, then the json that describes them: a json never points at missing weights.
    write_bytes_atomic(Path(out) / f"{args.name}.pth", buf.getvalue())
    write_json_atomic(Path(out) / f"{args.name}.json", meta)
    print(f"wrote {Path(out) / args.name}.pth ({buf.getbuffer().nbytes / 1e6:.2f} MB) and .json "
          f"in {time.perf_counter() - t_start:.0f}s", flush=True)
    return meta


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    train(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
