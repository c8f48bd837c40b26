"""Point Transformer V3 encoder as Concerto uses it (PT-v3m2 / Sonata, encoder only), pure PyTorch,
weight-compatible with the released `Pointcept/Concerto` checkpoints (strict load of the official
`{"config", "state_dict"}` `.pth` files; weights CC-BY-NC-4.0).

Offline default (tests, CPU pipeline): the `tiny` preset with seeded RANDOM weights —
`load_encoder(None)`; results carry `meta["weights_source"] == "random-init (no checkpoint)"`.

Real weights on a GPU machine with internet (optionally `pip install flash-attn`):

    from pipeline.models.ptv3 import load_encoder, extract_features
    model = load_encoder("concerto_base", device="cuda")        # or a local path "/data/concerto_base.pth"
    out = extract_features(model, coords, colors_uint8, normals, grid_size=0.02, seed=0, n_spatial_tokens=64)
"""

from .config import PRESETS, PTv3Config, preset
from .features import extract_features, upcast, upcast_width
from .loader import RANDOM_INIT, build_random, load_concerto, load_encoder, save_checkpoint
from .model import PointTransformerV3
from .transform import concerto_transform

__all__ = [
    "PRESETS",
    "PTv3Config",
    "preset",
    "PointTransformerV3",
    "load_concerto",
    "load_encoder",
    "build_random",
    "save_checkpoint",
    "RANDOM_INIT",
    "concerto_transform",
    "extract_features",
    "upcast",
    "upcast_width",
]
