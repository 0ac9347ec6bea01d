"""The benchmarks, beside the data path (nothing on it imports them): `dcode bench speed`
(decoding.py), `context` (context.py), `complete` (complete.py) and `gpu` (gpu.py, which checks the
CUDA path for correctness and measures speed, the 7B-class step and training throughput)."""
