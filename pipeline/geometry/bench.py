"""Benchmark of the one-directional Chamfer nearest-neighbour step (forward + backward).

    python -m pipeline.geometry.bench --out reports/bench

For B=4, P=8192 target points and M ∈ {5136, 20544, 41088} source points, every method computes
loss = mean over targets of the squared distance to the nearest source, then backward w.r.t. the
sources. Each (method, M) runs in its own subprocess so its peak RSS can be measured
(``ru_maxrss`` after the timed calls minus ``ru_maxrss`` before the first call) and an OOM or crash
is recorded instead of ending the run. Methods: ours (``nearest_sq_dist``, backend "auto"), the
chunked torch backend, faiss with its default BLAS threshold, scipy cKDTree, open3d core NNS (all
three through the same autograd Function, so they differ only in the argmin), and naive
``torch.cdist(x, y).min(-1)`` with full autograd. Also timed (extra): ``point_mesh_sq_dist`` for
K=8 deformed level-3 ico-spheres (exact and candidates-only).

Synthetic data: K spheres (centres in a 2×2×0.6 m box 3 m in front
of the camera, radii 0.15–0.35 m, vertices in random directions with 5 % radial noise); targets 80 %
on the camera-facing hemispheres (+5 mm noise), 20 % on a background plane. Timing: one untimed
first call, then ``--repeats`` timed calls; the median is reported with the share of the machine's
CPU time used by other processes during the calls (the machine is shared), and the load average.
Writes ``nearest.json`` and ``nearest.md`` into ``--out`` (atomically).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from pipeline.machine import cpu_model

SIZES = (5136, 20544, 41088)
METHODS = ("ours", "ours_default_wait", "torch_chunked", "faiss_default", "kdtree", "open3d", "naive")
MESH_METHODS = ("mesh_exact", "mesh_candidates")
NAIVE_BYTES_PER_PAIR = 3.1 * 4  # measured in perf.md: ≈ 3.1 float32 B·P·M buffers for fwd+bwd
TARGET_SPEEDUP, TARGET_VS_FASTEST, TARGET_RSS_MB = 100.0, 1.5, 1024.0


# ------------------------------------------------------------------------------------ worker side


def _busy_jiffies() -> int:
    with open("/proc/stat") as fh:
        vals = [int(v) for v in fh.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal ...
    return vals[0] + vals[1] + vals[2] + vals[5] + vals[6] + (vals[7] if len(vals) > 7 else 0)


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    raise KeyError(field)


def _reset_peak_rss() -> tuple[float, str]:
    """Reset the kernel's peak-RSS mark (VmHWM) if possible; return (current RSS MB, how measured)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return _status_mb("VmRSS"), "VmHWM after reset - VmRSS before the first call"
    except OSError:
        return _maxrss_mb(), "ru_maxrss after - ru_maxrss before the first call (misses peaks below the setup peak)"


def make_clouds(batch: int, n_points: int, n_sources: int, seed: int = 0):
    """Synthetic (targets (B,P,3), sources (B,M,3)) float32 in metres; see the module docstring."""
    import torch  # noqa: PLC0415

    k = 8 if n_sources <= 20544 else 16
    if n_sources % k:
        raise ValueError(f"--sizes: M={n_sources} must be a multiple of the sphere count {k}")
    per = n_sources // k
    g = torch.Generator().manual_seed(seed)
    xs, ys = [], []
    for _ in range(batch):
        centres = (torch.rand(k, 3, generator=g) - 0.5) * torch.tensor([2.0, 2.0, 0.6]) + torch.tensor([0, 0, 3.0])
        radii = 0.15 + 0.2 * torch.rand(k, 1, generator=g)
        dirs = torch.nn.functional.normalize(torch.randn(k, per, 3, generator=g), dim=-1)
        noise = 1.0 + 0.05 * torch.randn(k, per, 1, generator=g)
        ys.append((centres[:, None] + radii[:, None] * noise * dirs).reshape(-1, 3))
        n_fg = int(0.8 * n_points)
        which = torch.randint(k, (n_fg,), generator=g)
        d = torch.nn.functional.normalize(torch.randn(n_fg, 3, generator=g), dim=-1)
        to_cam = -centres[which] / centres[which].norm(dim=-1, keepdim=True)
        d = torch.where((d * to_cam).sum(-1, keepdim=True) < 0, -d, d)  # camera-facing hemisphere
        fg = centres[which] + radii[which] * d + 0.005 * torch.randn(n_fg, 3, generator=g)
        bg = torch.stack(
            [3.0 * torch.rand(n_points - n_fg, generator=g) - 1.5, 3.0 * torch.rand(n_points - n_fg, generator=g) - 1.5,
             torch.full((n_points - n_fg,), 4.0)], -1)
        xs.append(torch.cat([fg, bg])[torch.randperm(n_points, generator=g)])
    return torch.stack(xs), torch.stack(ys)


def _make_step(method: str, x, y):
    """Return a function doing one forward+backward and returning the loss (float)."""
    import functools  # noqa: PLC0415

    import torch  # noqa: PLC0415

    from pipeline.geometry import nearest  # noqa: PLC0415

    backends = {
        "ours": "auto",
        "ours_default_wait": "auto",
        "torch_chunked": "torch",
        "kdtree": "kdtree",
        "open3d": "open3d",
        "faiss_default": functools.partial(nearest.knn_faiss, blas_threshold=None),
    }

    def step():
        y.grad = None
        if method == "naive":
            loss = torch.cdist(x, y).min(dim=-1).values.pow(2).mean()
        else:
            loss = nearest.nearest_sq_dist(x, y, backend=backends[method])[0].mean()
        loss.backward()
        return float(loss.detach())

    return step


def _make_mesh_step(method: str, batch: int, n_points: int, seed: int = 0):
    import torch  # noqa: PLC0415

    from pipeline.geometry.icosphere import ico_sphere  # noqa: PLC0415
    from pipeline.geometry.mesh import point_mesh_sq_dist  # noqa: PLC0415

    from pipeline.geometry.mesh import sample_points_on_mesh  # noqa: PLC0415

    g = torch.Generator().manual_seed(seed + 1)
    v, f = ico_sphere(3)
    k = 8
    centres = (torch.rand(batch, k, 1, 3, generator=g) - 0.5) * torch.tensor([2.0, 2.0, 0.6]) + torch.tensor([0, 0, 3.0])
    radii = 0.15 + 0.2 * torch.rand(batch, k, 1, 1, generator=g)
    bumps = 1.0 + 0.1 * torch.rand(batch, k, v.shape[0], 1, generator=g)
    verts = centres + radii * bumps * v
    # Targets: 80 % on the mesh surfaces (+5 mm noise), 20 % on the background plane z = 4 m.
    n_fg = int(0.8 * n_points)
    on_mesh, _, _ = sample_points_on_mesh(verts.reshape(batch * k, -1, 3), f, n_fg // k + 1, generator=g)
    fg = on_mesh.reshape(batch, -1, 3)[:, :n_fg] + 0.005 * torch.randn(batch, n_fg, 3, generator=g)
    n_bg = n_points - n_fg
    bg = torch.stack([3.0 * torch.rand(batch, n_bg, generator=g) - 1.5, 3.0 * torch.rand(batch, n_bg, generator=g) - 1.5,
                      torch.full((batch, n_bg), 4.0)], -1)
    x = torch.cat([fg, bg], 1)
    verts = verts.requires_grad_()
    exact = method == "mesh_exact"

    def step():
        verts.grad = None
        loss = point_mesh_sq_dist(x, verts, f, candidates=8, exact=exact)[0].mean()
        loss.backward()
        return float(loss.detach())

    info = {"K": k, "faces_per_mesh": int(f.shape[0]), "verts_per_mesh": int(v.shape[0])}
    if not exact:  # untimed: how far the candidates-only result is from the exact one
        with torch.no_grad():
            approx = point_mesh_sq_dist(x, verts, f, candidates=8, exact=False)[0]
            ref = point_mesh_sq_dist(x, verts, f, candidates=8, exact=True)[0]
        rel = (approx - ref) / ref.clamp_min(1e-12)
        info.update(points_not_exact=int((rel > 1e-6).sum()), points_total=int(rel.numel()),
                    max_rel_error_sq_dist=float(rel.max()),
                    max_abs_error_dist_m=float((approx.sqrt() - ref.sqrt()).max()), mean_sq_dist_rel_error=float((approx.mean() - ref.mean()) / ref.mean()))
    return step, info


def run_worker(method: str, batch: int, n_points: int, n_sources: int, repeats: int, threads: int) -> dict:
    """Time one method in this process; returns a JSON-able dict."""
    import torch  # noqa: PLC0415

    torch.set_num_threads(threads)
    load = os.getloadavg()
    info: dict = {}
    if method in MESH_METHODS:
        step, info = _make_mesh_step(method, batch, n_points)
    else:
        x, y = make_clouds(batch, n_points, n_sources)
        y.requires_grad_()
        step = _make_step(method, x, y)
    import gc  # noqa: PLC0415

    gc.collect()
    base_rss, rss_how = _reset_peak_rss()
    t0 = time.perf_counter()
    loss = step()
    first_ms = (time.perf_counter() - t0) * 1e3
    times, others = [], []
    hz, ncpu = os.sysconf("SC_CLK_TCK"), os.cpu_count() or 1
    for _ in range(repeats):
        j0, c0, t0 = _busy_jiffies(), sum(os.times()[:2]), time.perf_counter()
        step()
        dt = time.perf_counter() - t0
        own = sum(os.times()[:2]) - c0
        other = (_busy_jiffies() - j0) / hz - own
        times.append(dt * 1e3)
        others.append(max(0.0, other) / (dt * ncpu))
    return {
        "method": method,
        "M": n_sources,
        "status": "ok",
        "median_ms": statistics.median(times),
        "min_ms": min(times),
        "times_ms": [round(t, 3) for t in times],
        "first_call_ms": first_ms,
        "peak_rss_delta_mb": (_status_mb("VmHWM") if rss_how.startswith("VmHWM") else _maxrss_mb()) - base_rss,
        "peak_rss_method": rss_how,
        "other_cpu_share_median": statistics.median(others),
        "loadavg_1m_at_start": load[0],
        "loss": loss,
        **info,
    }


# -------------------------------------------------------------------------------------- main side


def _mem_available_gb() -> float:
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 2**20
    return float("inf")


def _spawn(method: str, args, n_sources: int, mem_limit_gb: float | None, timeout_s: float) -> dict:
    cmd = [sys.executable, "-m", "pipeline.geometry.bench", "--worker", method, "--batch", str(args.batch),
           "--points", str(args.points), "--sizes", str(n_sources), "--repeats", str(args.repeats if method != "naive" else args.naive_repeats),
           "--threads", str(args.threads)]
    if mem_limit_gb is not None:
        cmd += ["--mem-limit-gb", f"{mem_limit_gb:.2f}"]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads),
               OPENBLAS_NUM_THREADS=str(args.threads))
    env.pop("OMP_WAIT_POLICY", None)
    if args.omp_wait_policy and method != "ours_default_wait":
        env["OMP_WAIT_POLICY"] = args.omp_wait_policy
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return {"method": method, "M": n_sources, "status": f"failed: timeout after {timeout_s:.0f} s"}
    if proc.returncode == 0:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    if proc.returncode == -signal.SIGKILL:
        why = "killed by SIGKILL (likely the OOM killer)"
    else:
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
        why = f"exit {proc.returncode}: {tail[-300:]}"
    return {"method": method, "M": n_sources, "status": f"failed: {why}"}


def _method_available(method: str) -> bool:
    if method == "open3d":
        from pipeline.geometry.nearest import available_backends  # noqa: PLC0415

        return "open3d" in available_backends()
    return True


def _summarise(rows: list[dict]) -> dict:
    """Add ratios per M; return the target verdicts for "ours"."""
    verdicts = {}
    for m in sorted({r["M"] for r in rows if r["method"] not in MESH_METHODS}):
        group = [r for r in rows if r["M"] == m and r["method"] not in MESH_METHODS]
        ok = [r for r in group if r["status"] == "ok"]
        if not ok:
            continue
        fastest = min(ok, key=lambda r: r["median_ms"])
        naive = next((r for r in ok if r["method"] == "naive"), None)
        for r in ok:
            r["ratio_vs_fastest"] = r["median_ms"] / fastest["median_ms"]
            r["speedup_vs_naive"] = naive["median_ms"] / r["median_ms"] if naive else None
        ours = next((r for r in ok if r["method"] == "ours"), None)
        if ours is None:
            verdicts[str(m)] = {"ours": "failed"}
            continue
        verdicts[str(m)] = {
            "fastest_method": fastest["method"],
            "speedup_vs_naive": ours["speedup_vs_naive"],
            "ge_100x_faster_than_naive": None if naive is None else ours["speedup_vs_naive"] >= TARGET_SPEEDUP,
            "ratio_vs_fastest": ours["ratio_vs_fastest"],
            "within_1.5x_of_fastest": ours["ratio_vs_fastest"] <= TARGET_VS_FASTEST,
            "peak_rss_delta_mb": ours["peak_rss_delta_mb"],
            "under_1GB": ours["peak_rss_delta_mb"] < TARGET_RSS_MB,
        }
    return verdicts


def _fmt(v, spec: str) -> str:
    return "—" if v is None else format(v, spec)


def _markdown(report: dict) -> str:
    c, mach = report["config"], report["machine"]
    lines = [
        "# Nearest-neighbour kernel benchmark (one-directional Chamfer, forward + backward)",
        "",
        f"Command: `{report['command']}`  ",
        f"B={c['batch']}, P={c['points']}, float32, {c['threads']} threads; median of {c['repeats']} timed calls "
        f"({c['naive_repeats']} for naive) after one untimed call; each row in its own subprocess.  ",
        f"Machine: {mach['cpu']} ({mach['nproc']} CPUs, shared), torch {mach['torch']}, faiss {mach['faiss']}; "
        f"load average (1 min) {mach['loadavg_start'][0]:.2f} at start, {mach['loadavg_end'][0]:.2f} at end. "
        "'other CPU' = share of the machine's CPU time used by other processes during the timed calls. "
        f"Workers run with OMP_WAIT_POLICY={c.get('omp_wait_policy') or 'unset'}; row `ours_default_wait` is `ours` with it unset "
        "(torch and faiss each ship their own libgomp; with the default spin-waiting, torch's idle threads steal the 2 cores "
        "from faiss's threads after every torch op).",
        "",
        "| M | method | median ms | min ms | first call ms | speed-up vs naive | × fastest | peak RSS Δ MB | other CPU | loss | status |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in report["results"]:
        ok = r["status"] == "ok"
        lines.append(
            f"| {r['M']} | {r['method']} | {_fmt(r.get('median_ms'), '.1f')} | {_fmt(r.get('min_ms'), '.1f')} | "
            f"{_fmt(r.get('first_call_ms'), '.0f')} | {_fmt(r.get('speedup_vs_naive'), '.0f')} | "
            f"{_fmt(r.get('ratio_vs_fastest'), '.2f')} | {_fmt(r.get('peak_rss_delta_mb'), '.0f')} | "
            f"{_fmt(r.get('other_cpu_share_median'), '.0%')} | {_fmt(r.get('loss'), '.6g')} | {'ok' if ok else r['status']} |"
        )
    lines += ["", "## Targets for `nearest_sq_dist` (auto backend)", "",
              "| M | fastest | speed-up vs naive (≥100) | × fastest (≤1.5) | peak RSS Δ MB (<1024) |",
              "|---:|---|---:|---:|---:|"]
    for m, v in report["targets"].items():
        if "fastest_method" not in v:
            lines.append(f"| {m} | ours failed | | | |")
            continue
        yes = {True: "yes", False: "NO", None: "naive not measured"}
        lines.append(
            f"| {m} | {v['fastest_method']} | {_fmt(v['speedup_vs_naive'], '.0f')} ({yes[v['ge_100x_faster_than_naive']]}) | "
            f"{v['ratio_vs_fastest']:.2f} ({yes[v['within_1.5x_of_fastest']]}) | {v['peak_rss_delta_mb']:.0f} ({yes[v['under_1GB']]}) |"
        )
    mesh = [r for r in report["results"] if r["method"] in MESH_METHODS]
    if mesh:
        lines += ["", "Rows `mesh_*` (M column = 0): `point_mesh_sq_dist` fwd+bwd, exact point-to-triangle distance to "
                  "K=8 deformed level-3 ico-spheres (10,240 faces per scene), 8 initial candidate faces; "
                  "`mesh_exact` certifies/retries to the exact minimum, `mesh_candidates` keeps the best candidate."]
        for r in mesh:
            if "points_not_exact" in r:
                lines.append(f"`mesh_candidates` vs exact on this scene: {r['points_not_exact']} of {r['points_total']} points "
                             f"got a non-nearest face (max error of the distance {r['max_abs_error_dist_m'] * 1e3:.2f} mm; "
                             f"relative error of the mean loss {r['mean_sq_dist_rel_error']:.2e}).")
    lines.append("")
    return "\n".join(lines)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m pipeline.geometry.bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("reports/bench"), help="output directory")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--points", type=int, default=8192)
    ap.add_argument("--sizes", type=str, default=",".join(map(str, SIZES)), help="comma-separated M values")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--naive-repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--omp-wait-policy", type=str, default="PASSIVE",
                    help="OMP_WAIT_POLICY for the workers ('' = unset); row ours_default_wait always runs unset")
    ap.add_argument("--naive-max-gb", type=float, default=18.0, help="skip naive above this estimated RSS")
    ap.add_argument("--methods", type=str, default=",".join(METHODS + MESH_METHODS))
    ap.add_argument("--worker", type=str, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--mem-limit-gb", type=float, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    methods = [m for m in args.methods.split(",") if m]
    bad = [m for m in methods if m not in METHODS + MESH_METHODS]
    if bad:
        raise SystemExit(f"--methods: unknown {bad}; choose from {METHODS + MESH_METHODS}")

    if args.worker:
        if args.mem_limit_gb:  # fail with MemoryError instead of being OOM-killed on the shared box
            lim = int(args.mem_limit_gb * 2**30)
            resource.setrlimit(resource.RLIMIT_DATA, (lim, lim))
        print(json.dumps(run_worker(args.worker, args.batch, args.points, sizes[0], args.repeats, args.threads)))
        return

    import faiss  # noqa: PLC0415
    import torch  # noqa: PLC0415

    load_start = os.getloadavg()
    rows: list[dict] = []
    for m in sizes:
        for method in [mm for mm in methods if mm in METHODS]:
            if not _method_available(method):
                rows.append({"method": method, "M": m, "status": "skipped: not importable"})
                continue
            limit = None
            if method == "naive":
                est_gb = NAIVE_BYTES_PER_PAIR * args.batch * args.points * m / 2**30
                avail = _mem_available_gb()
                limit = min(args.naive_max_gb, avail - 2.0)
                if est_gb > limit:
                    rows.append({"method": method, "M": m, "status": f"skipped: est. {est_gb:.1f} GB "
                                 f"(limit {args.naive_max_gb:.0f} GB, {avail:.1f} GB available)"})
                    continue
            print(f"[bench] M={m} {method} ...", file=sys.stderr, flush=True)
            rows.append(_spawn(method, args, m, limit, timeout_s=1800.0))
            print(f"[bench]   -> {rows[-1].get('median_ms', rows[-1]['status'])}", file=sys.stderr, flush=True)
    for method in [mm for mm in methods if mm in MESH_METHODS]:
        print(f"[bench] {method} ...", file=sys.stderr, flush=True)
        row = _spawn(method, args, 0, None, timeout_s=1800.0)
        row["M"] = 0
        rows.append(row)
    targets = _summarise(rows)
    report = {
        "command": "python -m pipeline.geometry.bench " + " ".join(argv if argv is not None else sys.argv[1:]),
        "config": {"batch": args.batch, "points": args.points, "sizes": sizes, "repeats": args.repeats,
                   "naive_repeats": args.naive_repeats, "threads": args.threads, "dtype": "float32",
                   "omp_wait_policy": args.omp_wait_policy or None,
                   "naive_max_gb": args.naive_max_gb, "naive_estimate_bytes_per_pair": NAIVE_BYTES_PER_PAIR},
        "machine": {"cpu": cpu_model(), "nproc": os.cpu_count(), "python": platform.python_version(),
                    "torch": torch.__version__, "faiss": faiss.__version__, "loadavg_start": load_start,
                    "loadavg_end": os.getloadavg(), "mem_available_gb_end": _mem_available_gb()},
        "results": rows,
        "targets": targets,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    _write_atomic(args.out / "nearest.json", json.dumps(report, indent=2) + "\n")
    _write_atomic(args.out / "nearest.md", _markdown(report))
    print(_markdown(report))


if __name__ == "__main__":
    main()
