"""Benchmarks that need more than one module: `dcode bench gpu` (dcode/bench/gpu.py) checks the
CUDA path for correctness and measures speed, the 7B-class step and training throughput."""
