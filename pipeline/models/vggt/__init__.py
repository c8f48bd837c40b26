"""Own implementation of VGGT (facebookresearch/vggt), state-dict compatible with the VGGT-1B checkpoint.

Written from the architecture described in the VGGT paper (Wang et al., CVPR 2025); contains no upstream code.
Entry points: ``VGGTConfig`` / ``vggt_1b`` / ``vggt_tiny`` (config), ``VGGT`` / ``build_vggt`` (model),
``load_vggt`` (weights), ``preprocess_frames`` (input), ``run_vggt`` / ``point_cloud_from_outputs``
(inference).
"""

from .config import VGGTConfig, default_dpt_layers, vggt_1b, vggt_tiny
from .model import VGGT, build_vggt, init_weights

__all__ = ["VGGTConfig", "default_dpt_layers", "vggt_1b", "vggt_tiny", "VGGT", "build_vggt", "init_weights"]
