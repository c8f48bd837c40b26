"""Point Transformer V3 encoder as Concerto uses it (PT-v3m2 / Sonata, encoder only), pure PyTorch,
weight-compatible with the released `Pointcept/Concerto` checkpoints (strict load of the official
`{"config", "state_dict"}` `.pth` files; weights CC-BY-NC-4.0).

Offline default (tests, CPU pipeline): the `tiny` preset with seeded RANDOM weights —
`load_encoder(None)`; results carry `meta["weights_source"] == "random-init (no checkpoint)"`.

Real weights on a GPU machine with internet (optionally `pip install flash-attn`); import from the
modules (this package file imports nothing, so e.g. `bev_tokens` loads without the encoder):

    from pipeline.models.ptv3.features import extract_features
    from pipeline.models.ptv3.loader import load_encoder
    model = load_encoder("concerto_base", device="cuda")        # or a local path "/data/concerto_base.pth"
    out = extract_features(model, coords, colors_uint8, normals, grid_size=0.02, seed=0, n_spatial_tokens=64)
"""
