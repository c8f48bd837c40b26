"""Benchmark: tiny-preset VGGT inference speed and peak memory on CPU -> reports/bench/vggt.json.

Usage: ``python -m pipeline.models.vggt.bench [--out reports/bench/vggt.json]``.
Each (frames, frames_per_chunk) case runs in a fresh subprocess limited to 2 threads so its peak RSS
(``ru_maxrss``) belongs to that case alone. Weights are random (speed and memory do not depend on them).
The VGGT-1B forward is not run here (about 128 s for 2 frames on 2 CPU cores); only its parameter count
is recorded from a meta-device build.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

from pipeline.io import atomic

CASES = [(8, 2), (8, 4), (8, 8), (16, 4), (16, 8), (32, 8)]  # (frames, frames_per_chunk)
FRAME_HW = (180, 320)  # original frames; crop mode at target 518 -> 294 x 518 model input
TARGET = 518


def _case(frames: int, chunk: int) -> dict:
    import resource

    import numpy as np
    import torch

    from .config import vggt_tiny
    from .infer import run_vggt
    from .model import build_vggt

    torch.set_num_threads(2)
    model = build_vggt(vggt_tiny(enable_track=False, enable_point=False), seed=0)
    imgs = np.random.default_rng(0).integers(0, 256, (frames, *FRAME_HW, 3), dtype=np.uint8)
    run_vggt(model, imgs[:2], frames_per_chunk=2, target_size=TARGET)  # warm-up
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    out = run_vggt(model, imgs, frames_per_chunk=chunk, target_size=TARGET)
    dt = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"frames": frames, "frames_per_chunk": chunk, "model_hw": [int(v) for v in out["pre_model_hw"]],
            "seconds": round(dt, 3), "cpu_seconds": round(cpu, 3), "frames_per_s": round(frames / dt, 2),
            "peak_rss_mb": round(peak_kb / 1024, 1), "peak_rss_before_run_mb": round(rss_before / 1024, 1),
            "peak_rss_per_frame_mb": round(peak_kb / 1024 / frames, 2)}


def _param_count_1b() -> int:
    import torch

    from .config import vggt_1b
    from .model import VGGT

    with torch.device("meta"):
        return sum(p.numel() for p in VGGT(vggt_1b()).parameters())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="reports/bench/vggt.json")
    parser.add_argument("--case", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(_case(*args.case)))
        return
    env = dict(os.environ, OMP_NUM_THREADS="2", MKL_NUM_THREADS="2")
    results = []
    for frames, chunk in CASES:
        res = subprocess.run([sys.executable, "-m", "pipeline.models.vggt.bench", "--case", str(frames), str(chunk)],
                             env=env, capture_output=True, text=True, check=True)
        results.append(json.loads(res.stdout.strip().splitlines()[-1]))
        print(results[-1], flush=True)
    from .config import vggt_tiny

    report = {
        "what": "VGGT tiny preset (camera + depth heads, random weights), CPU, run_vggt incl. preprocessing "
                "and unprojection; frames_per_s over the whole sequence; peak RSS of a fresh process",
        "weights_source": "random-init (no checkpoint)",
        "caveat": "shared 2-core machine with other jobs running: wall-clock numbers are noisy; cpu_seconds "
                  "(user+sys of the run) is the steadier cost measure",
        "threads": 2, "frame_hw_original": list(FRAME_HW), "target_size": TARGET,
        "tiny_config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(vggt_tiny()).items()},
        "results": results,
        "vggt_1b_parameters": _param_count_1b(),
        "vggt_1b_forward": "not run on CPU (spec: about 128 s for 2 frames at 294x518 on 2 cores)",
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpu_count": os.cpu_count()},
        "command": "python -m pipeline.models.vggt.bench",
    }
    atomic.write_json(args.out, report)
    os.chmod(args.out, 0o644)  # atomic writes keep mkstemp's 0600
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
