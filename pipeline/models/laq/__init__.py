"""Concerto-LAQ: latent action quantization of frame pairs of cached point features (NSVQ, LAPA-style).

    from pipeline.models.laq import LAQ, LAQConfig
    model = LAQ(LAQConfig(in_channels=64))
    out = model(tokens_t, xyz_t, tokens_t1, xyz_t1)   # out.loss, out.indices (B, code_seq_len), ...
"""

from .config import LAQConfig
from .model import LAQ, LAQOutput
from .nsvq import NSVQ

__all__ = ["LAQ", "LAQConfig", "LAQOutput", "NSVQ"]
