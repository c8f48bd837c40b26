"""The synthetic renderer's thread settings and ray casting.

``one_blas_thread`` must limit numpy's BLAS to one thread in the process and in processes forked inside it,
restore the setting afterwards, and leave every rendered array bit-identical; ``MeshRaycaster.cast`` must
hit a plane at the analytic distance and a box with the id of the mesh it was added as.
"""

from __future__ import annotations

import multiprocessing as mp

import numpy as np
from threadpoolctl import threadpool_info

from pipeline.data.camera import synthia_intrinsics
from pipeline.data.synthetic.generate import camera_pose
from pipeline.data.synthetic.render import FrameRenderer, one_blas_thread
from pipeline.data.synthetic.scene import build_scene
from pipeline.geometry.raycast import MeshRaycaster


def _blas_threads(_=None) -> list[int]:
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


def test_one_blas_thread_in_the_process_and_its_forked_workers_then_restored():
    before = _blas_threads()
    with one_blas_thread():
        assert _blas_threads() and set(_blas_threads()) == {1}
        with mp.get_context("fork").Pool(2) as pool:
            assert all(set(threads) == {1} for threads in pool.map(_blas_threads, range(2)))
    assert _blas_threads() == before


def test_rendered_views_are_bit_identical_with_one_or_the_default_blas_threads():
    """At 190 x 320 the ray rotation (60800 x 3 @ 3 x 3) is large enough for OpenBLAS to use several threads."""
    scene = build_scene(7, frames=5)
    positions, yaws, _ = scene.rig_states()
    pose = camera_pose(scene, positions[3], float(yaws[3]), "Stereo_Left/Omni_F")
    intrinsics = synthia_intrinsics(190, 320)

    def render():
        return FrameRenderer(scene, 0.6).render(pose, intrinsics, 190, 320, np.random.default_rng(5))

    default = render()
    with one_blas_thread():
        single = render()
    for name in ("depth", "class_id", "instance_id", "object_id", "rgb"):
        a, b = getattr(default, name), getattr(single, name)
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), name


def test_cast_hits_the_plane_at_the_analytic_distance_and_names_the_box():
    raycaster = MeshRaycaster()
    e = 100.0
    plane = np.array([[-e, 0, -e], [e, 0, -e], [-e, 0, e], [e, 0, e]], dtype=np.float32)
    plane_id = raycaster.add_mesh(plane, np.array([[0, 2, 1], [1, 2, 3]], dtype=np.uint32))
    box = np.array([[x, y, z] for x in (-1, 1) for y in (0, 2) for z in (9, 11)], dtype=np.float32)
    box_faces = np.array([[0, 2, 1], [1, 2, 3], [4, 5, 6], [5, 7, 6], [0, 1, 4], [1, 5, 4], [2, 6, 3], [3, 6, 7],
                          [0, 4, 2], [2, 4, 6], [1, 3, 5], [3, 7, 5]], dtype=np.uint32)
    box_id = raycaster.add_mesh(box, box_faces)
    rng = np.random.default_rng(0)
    origin = np.array([0.5, 4.0, -2.0])
    down = np.stack([rng.uniform(-1, 1, 200), rng.uniform(-1, -0.2, 200), rng.uniform(-1, -0.1, 200)], axis=1)
    at_box = np.stack([rng.uniform(-0.9, 0.9, 50), rng.uniform(0.1, 1.9, 50), np.full(50, 9.0)], axis=1) - origin
    dirs = np.concatenate([down, at_box])  # away from the box, then at points of its near face (z = 9)
    t_hit, ids, normals = raycaster.cast(np.broadcast_to(origin, dirs.shape), dirs, nthreads=1)
    on_plane = ids == plane_id
    assert on_plane[:200].all() and (ids[200:] == box_id).all()
    np.testing.assert_allclose(t_hit[on_plane], -origin[1] / dirs[on_plane, 1], rtol=1e-5)  # y = 0 at t = -y0 / dy
    hits = origin + dirs[~on_plane] * t_hit[~on_plane, None]
    np.testing.assert_allclose(t_hit[~on_plane], 1.0, rtol=1e-5)  # aimed at z = 9 points: hit at t = 1
    np.testing.assert_allclose(hits, at_box + origin, atol=1e-4)
    np.testing.assert_allclose(np.abs(normals[on_plane, 1]), 1.0, atol=1e-6)
