"""Ray-cast rendering of a synthetic scene (open3d's ``RaycastingScene`` via ``pipeline/geometry/raycast.py``).

For each camera of a frame it returns planar depth (metres, inf for sky), class and instance ids,
a per-pixel object id (the generator's own ids, for ground truth visibility) and a shaded RGB image.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from pipeline.data.camera import GL_FROM_CV, heading_vector, pixel_rays, right_vector
from pipeline.data.synthetic.scene import CLASS_ID, Scene, SceneObject
from pipeline.data.synthetic.trajectories import StaticMotion
from pipeline.geometry.raycast import MeshRaycaster
from pipeline.io.synthia import Intrinsics

SKY_CLASS = 1
GROUND_EXTENT_M = 2000.0
_BOX_FACES = np.array(
    [[0, 2, 1], [1, 2, 3], [4, 5, 6], [5, 7, 6], [0, 1, 4], [1, 5, 4],
     [2, 6, 3], [3, 6, 7], [0, 4, 2], [2, 4, 6], [1, 3, 5], [3, 7, 5]], dtype=np.uint32)
_GROUND_COLOURS = {CLASS_ID["road"]: (70, 70, 75), CLASS_ID["sidewalk"]: (150, 145, 140),
                   CLASS_ID["lanemarking"]: (235, 235, 225), CLASS_ID["vegetation"]: (70, 110, 50)}
_GROUND_LUT = np.zeros((max(_GROUND_COLOURS) + 1, 3))  # class id -> base colour (float64 RGB)
for _cid, _colour in _GROUND_COLOURS.items():
    _GROUND_LUT[_cid] = _colour
_SUN = np.array([0.35, 0.85, -0.4]) / np.linalg.norm([0.35, 0.85, -0.4])


@dataclass
class RenderedView:
    depth: np.ndarray  # (H, W) float32 planar depth in metres, inf where the ray hits nothing (sky)
    class_id: np.ndarray  # (H, W) uint16 SYNTHIA class
    instance_id: np.ndarray  # (H, W) uint16 GT/LABELS instance (0 for static classes)
    object_id: np.ndarray  # (H, W) int32 generator object id, 0 for ground and sky
    rgb: np.ndarray  # (H, W, 3) uint8


_UNIT_CORNERS = np.array([[i, j, k] for i in (-0.5, 0.5) for j in (-0.5, 0.5) for k in (-0.5, 0.5)])  # (8, 3)
_UP = np.array([0.0, 1.0, 0.0])


def box_mesh(obj: SceneObject, t: float) -> tuple[np.ndarray, np.ndarray]:
    """World vertices (8·parts, 3) float32 and triangles (12·parts, 3) of an object at time ``t``.

    A static object's mesh is the same at every time: it is computed once (:func:`_static_box_mesh`).
    """
    if isinstance(obj.motion, StaticMotion):
        return _static_box_mesh(obj)
    return _box_mesh(obj, t)


def _box_mesh(obj: SceneObject, t: float) -> tuple[np.ndarray, np.ndarray]:
    (x, z), yaw = obj.motion.state(t)
    right, forward = right_vector(yaw), heading_vector(yaw)
    centres, sizes = _part_arrays(obj)
    local = centres + _UNIT_CORNERS * sizes  # (parts, 8, 3)
    world = np.array([x, obj.base_height, z]) + local[..., :1] * right + local[..., 1:2] * _UP + local[..., 2:3] * forward
    return world.reshape(-1, 3).astype(np.float32), _box_faces(len(obj.parts))


@functools.lru_cache(maxsize=4096)
def _static_box_mesh(obj: SceneObject) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_box_mesh` of a static object (hashable by value; equal objects have equal meshes), read-only."""
    verts, faces = _box_mesh(obj, 0.0)
    verts.flags.writeable = faces.flags.writeable = False
    return verts, faces


def _part_arrays(obj: SceneObject) -> tuple[np.ndarray, np.ndarray]:
    """Part centres and sizes, each (parts, 1, 3) metres in the object's local frame."""
    return (np.array([p.centre for p in obj.parts], dtype=np.float64)[:, None],
            np.array([p.size for p in obj.parts], dtype=np.float64)[:, None])


@functools.lru_cache(maxsize=8)
def _box_faces(parts: int) -> np.ndarray:
    """Triangles (12·parts, 3) uint32 of ``parts`` boxes of 8 vertices each (read-only)."""
    faces = (_BOX_FACES[None] + 8 * np.arange(parts, dtype=np.uint32)[:, None, None]).reshape(-1, 3)
    faces.flags.writeable = False
    return faces


@functools.lru_cache(maxsize=8)
def _pixel_rays(height: int, width: int, intrinsics: Intrinsics) -> np.ndarray:
    """:func:`pipeline.data.camera.pixel_rays` as (H·W, 3), computed once per image size (read-only)."""
    rays = pixel_rays(height, width, intrinsics).reshape(-1, 3)
    rays.flags.writeable = False
    return rays


def one_blas_thread():
    """Context manager: numpy's BLAS on one thread while frames are rendered (processes forked inside inherit it).

    Each render multiplies (H·W, 3) rays by a 3x3 rotation; OpenBLAS splits that over all cores and spins, which
    costs ~7x the CPU time of one thread and oversubscribes the render processes. One thread gives bit-identical
    products (same kernel, same summation order per element).
    """
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1, user_api="blas")


class FrameRenderer:
    """Builds the open3d scene of one time step and renders any number of cameras from it."""

    def __init__(self, scene: Scene, t: float):
        self.scene = scene
        self._raycast = MeshRaycaster()
        e = GROUND_EXTENT_M
        ground = np.array([[-e, 0, -e], [e, 0, -e], [-e, 0, e], [e, 0, e]], dtype=np.float32)
        self._ground_id = self._raycast.add_mesh(ground, np.array([[0, 2, 1], [1, 2, 3]], dtype=np.uint32))
        self._objects: dict[int, SceneObject] = {}
        for obj in scene.objects:
            verts, faces = box_mesh(obj, t)
            self._objects[self._raycast.add_mesh(verts, faces)] = obj

    def render(self, camera_to_world: np.ndarray, intrinsics: Intrinsics, height: int, width: int,
               rng: np.random.Generator) -> RenderedView:
        """Render one camera (SYNTHIA camera-to-world pose, OpenGL axes)."""
        rotation_cv = camera_to_world[:3, :3] @ GL_FROM_CV
        dirs = _pixel_rays(height, width, intrinsics) @ rotation_cv.T  # z_cv = 1 => t_hit = depth
        origin = camera_to_world[:3, 3]
        depth, geometry, normals = self._raycast.cast(np.broadcast_to(origin, dirs.shape), dirs, nthreads=1)
        sky = ~np.isfinite(depth)

        # Per-geometry lookup tables (index = open3d geometry id; the last row is "no hit").
        n_geom = max(self._objects, default=self._ground_id) + 2
        lut_class = np.full(n_geom, SKY_CLASS, dtype=np.uint16)
        lut_instance = np.zeros(n_geom, dtype=np.uint16)
        lut_object = np.zeros(n_geom, dtype=np.int32)
        lut_colour = np.zeros((n_geom, 3), dtype=np.float64)
        for gid, obj in self._objects.items():
            lut_class[gid], lut_instance[gid], lut_object[gid], lut_colour[gid] = (
                obj.class_id, obj.instance_id, obj.object_id, obj.colour)
        geometry = np.where(sky, n_geom - 1, geometry)
        class_id, instance_id = lut_class[geometry], lut_instance[geometry]
        object_id, base = lut_object[geometry], lut_colour[geometry]
        ground = np.flatnonzero(geometry == self._ground_id)  # sky rows hold n_geom - 1, never the ground's id
        ground_t = depth[ground]
        ground_xz = np.stack([origin[0] + dirs[ground, 0] * ground_t, origin[2] + dirs[ground, 2] * ground_t], axis=1)
        ground_classes = self.scene.ground_class(ground_xz)
        class_id[ground] = ground_classes
        base[ground] = _GROUND_LUT[ground_classes]
        shade = 0.35 + 0.65 * np.clip(np.abs(normals @ _SUN), 0, 1)
        rgb = base * shade[:, None] + rng.normal(0, 4.0, size=base.shape)
        sky_rows = np.flatnonzero(sky) // width  # image row v of every sky pixel: a vertical gradient
        rgb[sky] = np.stack([110 + 60 * sky_rows / height, 150 + 50 * sky_rows / height,
                             np.full(sky_rows.shape, 230.0)], axis=1)
        shape = (height, width)
        return RenderedView(
            depth=np.where(sky, np.inf, depth).reshape(shape).astype(np.float32),
            class_id=class_id.reshape(shape), instance_id=instance_id.reshape(shape),
            object_id=object_id.reshape(shape), rgb=np.clip(rgb, 0, 255).astype(np.uint8).reshape(*shape, 3),
        )
