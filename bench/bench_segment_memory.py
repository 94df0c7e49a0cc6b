"""Segmentation inference: forward time of one 128x64x64 patch and peak memory on a 512x512x300 volume (CPU).

Issue 6 asks for the forward time of one 128x64x64 patch of the paper-sized network (the paper:
96.77 ms on a TITAN X) and for peak memory of sliding-window inference on a 512 x 512 x 300
thin-slice CT to stay under 6 GB on CPU. The network is untrained (weights do not change time
or memory). Peak memory is the process's maximum resident set size (``ru_maxrss``), measured in
a fresh child process per configuration so one does not inherit the other's peak.

Run: ``.venv/bin/python bench/bench_segment_memory.py [--channels 32,64,128,256,320] [--spacing 2.5,1.6,1.6]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_phantom import machine  # noqa: E402

CHILD = r"""
import json, resource, sys, time
import numpy as np, torch
from esoct.io.volume import Volume
from esoct.models.unet3d import UNet3D
from esoct.segment.data import Preprocessing
from esoct.segment.inference import Segmenter, predict_volume
args = json.loads(sys.argv[1])
torch.manual_seed(0)
net = UNet3D(1, 6, channels=args["channels"], strides=[(1, 1, 1)] + [(2, 2, 2)] * (len(args["channels"]) - 1),
             deep_supervision=min(4, len(args["channels"]) - 1)).eval()
mode = args["mode"]
if mode == "patch":
    x = torch.randn(1, 1, 128, 64, 64)
    with torch.inference_mode():
        net(x)
        times = []
        for _ in range(3):
            t = time.perf_counter(); net(x); times.append(time.perf_counter() - t)
    print(json.dumps({"patch_s": min(times)}))
else:
    rng = np.random.default_rng(0)
    ct = rng.normal(0, 30, (300, 512, 512)).astype(np.int16)
    vol = Volume(ct, (1.0, 0.78, 0.78), (0.0, 0.0, 0.0))
    pre = Preprocessing(spacing_zyx=tuple(args["spacing"]), clip_low=-1000.0, clip_high=1000.0, mean=0.0, std=300.0)
    seg = Segmenter(net, pre, tuple(args["patch"]), 6)
    t = time.perf_counter()
    labels, _ = predict_volume(seg, vol, sw_batch_size=1, progress=False)
    wall = time.perf_counter() - t
    assert labels.shape == vol.shape
    print(json.dumps({"wall_s": wall, "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))
"""


def child(args: dict) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(args)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--channels", default="32,64,128,256,320")
    ap.add_argument("--volume-channels", default="8,16,32,64", help="network for the whole-volume memory run")
    ap.add_argument("--spacing", default="2.5,1.6,1.6", help="inference spacing z,y,x mm")
    ap.add_argument("--patch", default="64,96,96", help="sliding-window patch z,y,x voxels")
    args = ap.parse_args()
    import torch

    chans = [int(c) for c in args.channels.split(",")]
    print(f"machine: {machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    patch = child({"mode": "patch", "channels": chans})
    print(f"forward of one 128x64x64 patch, channels {chans}: {patch['patch_s'] * 1000:.0f} ms on CPU "
          "(paper: 96.77 ms on a TITAN X GPU)")
    vchans = [int(c) for c in args.volume_channels.split(",")]
    spacing = [float(v) for v in args.spacing.split(",")]
    psize = [int(v) for v in args.patch.split(",")]
    t = time.perf_counter()
    vol = child({"mode": "volume", "channels": vchans, "spacing": spacing, "patch": psize})
    print(f"512x512x300 CT (0.78x0.78x1.0 mm) -> {spacing} mm, patch {psize}, channels {vchans}: "
          f"inference {vol['wall_s']:.0f} s, peak resident memory {vol['peak_gb']:.2f} GB (goal < 6 GB); "
          f"child process {time.perf_counter() - t:.0f} s")


if __name__ == "__main__":
    main()
