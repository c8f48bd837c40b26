"""Point Transformer V3 encoder (Concerto / Sonata variant), pure PyTorch, weight-compatible with the released checkpoints."""
