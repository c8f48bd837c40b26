"""pytorch3d-free geometry for protoscene.

Modules (import them directly; nothing heavy is imported here):
    icosphere  — ``ico_sphere(level)``: unit ico-sphere verts/faces, outward winding.
    rotations  — ``euler_to_matrix`` (intrinsic, pytorch3d/scipy "ZYX" convention), ``geodesic_angle``.
    nearest    — ``nearest_sq_dist`` / ``one_sided_chamfer``: O(B·(P+M))-memory nearest neighbour with
                 exact gradients (faiss / torch / cKDTree / open3d / pytorch3d backends).
    mesh       — ``face_areas``, ``sample_points_on_mesh``, ``closest_point_on_triangles``,
                 ``point_mesh_sq_dist`` (point → nearest surface of K meshes).
    mesh_owner — ``nearest_slot``: the mesh with the nearest surface of each point (exact, open3d).
    bench      — ``python -m pipeline.geometry.bench --out reports/bench``.
"""
