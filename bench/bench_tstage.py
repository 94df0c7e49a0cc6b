"""Speed of the T-stage models: training throughput and per-patient inference, CPU (and CUDA when present).

Training: patients per second of one training pass (forward, cross-entropy, backward, Adam step) in
batches of 8 patients of 10 slices (the phantom's median is 9-10) at the ``fast`` preset (64 px,
width 0.25). Inference: seconds per patient (10 slices, and 22, the phantom's longest) at the
``fast`` preset and at full size (224 px, width 1.0, the paper's setting). Goal: one patient
inferred on CPU in under 2 s at full size.

Run: ``.venv/bin/python bench/bench_tstage.py [--threads N] [--repeats 5]``
"""

from __future__ import annotations

import argparse
import os
import platform
import time


def machine(torch) -> str:
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs ({cpu}), load average {load:.1f}, "
            f"Python {platform.python_version()}, torch {torch.__version__}, {torch.get_num_threads()} torch threads")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--train-patients", type=int, default=32)
    args = ap.parse_args()

    import numpy as np
    import torch

    from esoct.models.resolstm import build_model
    from esoct.tstage.presets import PRESETS

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"machine: {machine(torch)}")
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    fast = PRESETS["fast"]
    gen = torch.Generator().manual_seed(0)

    for dev in devices:
        name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "CPU"
        amp = dev.type == "cuda"
        print(f"\n== {name} ({dev})")
        for kind in ("resolstm", "resnet"):
            torch.manual_seed(0)
            model = build_model(kind, num_classes=2, width=fast.width).to(dev).train()
            opt = torch.optim.Adam(model.parameters(), lr=fast.lr)
            scaler = torch.amp.GradScaler("cuda", enabled=amp)
            x = torch.rand(8, 10, 1, fast.image_size, fast.image_size, generator=gen).to(dev)
            lengths, y = torch.full((8,), 10), torch.tensor([0, 1] * 4, device=dev)

            def step():
                opt.zero_grad(set_to_none=True)
                with torch.autocast(dev.type, dtype=torch.float16, enabled=amp):
                    loss = model.loss(x, lengths, y)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()

            step()  # warm-up
            n_batches = max(1, args.train_patients // 8)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(n_batches):
                step()
            if dev.type == "cuda":
                torch.cuda.synchronize()
            rate = n_batches * 8 / (time.perf_counter() - t0)
            print(f"training {kind:8s} fast preset ({fast.image_size} px, width {fast.width}, 10 slices): "
                  f"{rate:6.1f} patients/s")
        for size, width, label in ((fast.image_size, fast.width, "fast preset"), (224, 1.0, "full size")):
            for kind in ("resolstm", "resnet"):
                torch.manual_seed(0)
                model = build_model(kind, num_classes=2, width=width).to(dev).eval()
                for n_slices in (10, 22):
                    x = torch.rand(1, n_slices, 1, size, size, generator=gen).to(dev)
                    times = []
                    with torch.no_grad(), torch.autocast(dev.type, dtype=torch.float16, enabled=amp):
                        model(x)  # warm-up
                        for _ in range(args.repeats):
                            if dev.type == "cuda":
                                torch.cuda.synchronize()
                            t0 = time.perf_counter()
                            model(x)
                            if dev.type == "cuda":
                                torch.cuda.synchronize()
                            times.append(time.perf_counter() - t0)
                    med = float(np.median(times))
                    goal = f" -- goal < 2 s: {'PASS' if med < 2 else 'FAIL'}" if dev.type == "cpu" and size == 224 else ""
                    print(f"inference {kind:8s} {label:11s} ({size} px, width {width}, {n_slices:2d} slices): "
                          f"{med * 1000:8.1f} ms per patient (median of {args.repeats}){goal}")


if __name__ == "__main__":
    main()
