"""protoscene: depth maps and videos to 3-D scenes of object slots; frame pairs to latent actions."""

import os
import time

STARTED = time.perf_counter()  # about when the stage's process started: its run facts count from here

# torch and faiss each ship an OpenMP runtime; with the default (active) wait policy torch's idle
# threads spin and starve faiss's, which made nearest-neighbour calls 3-13x slower on 2 cores
# (reports/bench/nearest.md). Must be set before either library starts its thread pool.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
