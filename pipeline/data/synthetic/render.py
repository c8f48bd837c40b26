"""Ray-cast rendering of a synthetic scene (open3d's ``RaycastingScene`` via ``pipeline/geometry/raycast.py``).

For each camera of a frame it returns planar depth (metres, inf for sky), class and instance ids,
a per-pixel object id (the generator's own ids, for ground truth visibility) and a shaded RGB image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.data.camera import GL_FROM_CV, heading_vector, pixel_rays, right_vector
from pipeline.data.synthetic.scene import CLASS_ID, Scene, SceneObject
from pipeline.geometry.raycast import MeshRaycaster
from pipeline.io.synthia import Intrinsics

SKY_CLASS = 1
GROUND_EXTENT_M = 2000.0
_BOX_FACES = np.array(
    [[0, 2, 1], [1, 2, 3], [4, 5, 6], [5, 7, 6], [0, 1, 4], [1, 5, 4],
     [2, 6, 3], [3, 6, 7], [0, 4, 2], [2, 4, 6], [1, 3, 5], [3, 7, 5]], dtype=np.uint32)
_GROUND_COLOURS = {CLASS_ID["road"]: (70, 70, 75), CLASS_ID["sidewalk"]: (150, 145, 140),
                   CLASS_ID["lanemarking"]: (235, 235, 225), CLASS_ID["vegetation"]: (70, 110, 50)}
_SUN = np.array([0.35, 0.85, -0.4]) / np.linalg.norm([0.35, 0.85, -0.4])


@dataclass
class RenderedView:
    depth: np.ndarray  # (H, W) float32 planar depth in metres, inf where the ray hits nothing (sky)
    class_id: np.ndarray  # (H, W) uint16 SYNTHIA class
    instance_id: np.ndarray  # (H, W) uint16 GT/LABELS instance (0 for static classes)
    object_id: np.ndarray  # (H, W) int32 generator object id, 0 for ground and sky
    rgb: np.ndarray  # (H, W, 3) uint8


def box_mesh(obj: SceneObject, t: float) -> tuple[np.ndarray, np.ndarray]:
    """World vertices (8·parts, 3) float32 and triangles (12·parts, 3) of an object at time ``t``."""
    (x, z), yaw = obj.motion.state(t)
    right, forward, up = right_vector(yaw), heading_vector(yaw), np.array([0.0, 1.0, 0.0])
    corners = np.array([[i, j, k] for i in (-0.5, 0.5) for j in (-0.5, 0.5) for k in (-0.5, 0.5)])
    verts, faces = [], []
    for n, part in enumerate(obj.parts):
        local = np.asarray(part.centre) + corners * np.asarray(part.size)
        world = np.array([x, obj.base_height, z]) + local[:, :1] * right + local[:, 1:2] * up + local[:, 2:3] * forward
        verts.append(world)
        faces.append(_BOX_FACES + 8 * n)
    return np.concatenate(verts).astype(np.float32), np.concatenate(faces).astype(np.uint32)


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
        dirs = pixel_rays(height, width, intrinsics).reshape(-1, 3) @ rotation_cv.T  # z_cv = 1 => t_hit = depth
        origins = np.broadcast_to(camera_to_world[:3, 3], dirs.shape)
        depth, geometry, normals = self._raycast.cast(origins, dirs, nthreads=1)
        sky = ~np.isfinite(depth)
        points = camera_to_world[:3, 3] + dirs * np.where(sky, 0.0, depth)[:, None]

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
        ground = (geometry == self._ground_id) & ~sky
        ground_classes = self.scene.ground_class(points[ground][:, [0, 2]])
        class_id[ground] = ground_classes
        ground_lut = np.zeros((max(_GROUND_COLOURS) + 1, 3))
        for cid, colour in _GROUND_COLOURS.items():
            ground_lut[cid] = colour
        base[ground] = ground_lut[ground_classes]
        shade = 0.35 + 0.65 * np.clip(np.abs(normals @ _SUN), 0, 1)
        rgb = base * shade[:, None] + rng.normal(0, 4.0, size=base.shape)
        v = np.repeat(np.arange(height), width)
        sky_colour = np.stack([110 + 60 * v / height, 150 + 50 * v / height, np.full(v.shape, 230.0)], axis=1)
        rgb[sky] = sky_colour[sky]
        shape = (height, width)
        return RenderedView(
            depth=np.where(sky, np.inf, depth).reshape(shape).astype(np.float32),
            class_id=class_id.reshape(shape), instance_id=instance_id.reshape(shape),
            object_id=object_id.reshape(shape), rgb=np.clip(rgb, 0, 255).astype(np.uint8).reshape(*shape, 3),
        )
