"""`dcode bench gpu` sections at scale: the 7B-class denoising step and training throughput.

7B step: one denoising forward of a model with DiffuCoder-7B / Dream-7B shapes (Qwen2.5-7B: random
bf16 weights made on the device, batch 1) at canvases of 256, 512 and 1024 positions: the
context in the KV cache and one 32-token block active, and for comparison the whole canvas
recomputed. A cached step reads every weight once and little else, so its floor is the weight
bytes it reads over the device's measured copy bandwidth. Training: dcode's trainer pieces
(`make_optimizer`, `corrupt`, `diffusion_loss`, bf16 autocast and torch.compile as in
dcode/train/run.py) on dcode-mini's and dcode-small's shapes, tokens/s and MFU.
"""

from __future__ import annotations

import time

import torch

from dcode.bench.common import BenchContext, met_word, target_status, time_ms
from dcode.model.config import ModelConfig, read_config_json
from dcode.model.paths import shipped_weights_root
from dcode.model.transformer import Transformer
from dcode.train.objective import MixConfig, TokenInfo, corrupt, diffusion_loss
from dcode.train.run import TrainConfig, _to, device_peak, make_optimizer, train_flops_per_token

FLOOR_TARGET = 1.3  # a cached 7B step within this factor of the bandwidth floor
MFU_TARGET = 0.40
ACTIVE = 32  # one block of masked positions per denoising step
MERCURY_CODER_MINI_TOK_S = 1109  # H100, Inception Labs' published figure

DIFFUCODER_7B = ModelConfig(vocab_size=152064, dim=3584, n_layers=28, n_heads=28, n_kv_heads=4, ffn_dim=18944,
                            max_seq_len=32768, rope_theta=1e6, tie_embeddings=False, qkv_bias=True)
# The same code paths at a size a CPU test run can afford.
QUICK_SHAPE = ModelConfig(vocab_size=4096, dim=128, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=256,
                          tie_embeddings=False, qkv_bias=True)


def copy_bandwidth(ctx: BenchContext) -> float:
    """Device memory bandwidth in bytes/s, read + write, from a large device-to-device copy."""
    size = 64 * 2**20 if ctx.quick else 2 * 2**30
    src = torch.empty(size, dtype=torch.uint8, device=ctx.device)
    dst = torch.empty_like(src)
    ms = time_ms(lambda: dst.copy_(src), ctx, 10)
    return 2 * size / (ms / 1000)


def read_bytes(net: Transformer) -> int:
    """Bytes of the weights a forward reads: all but the embedding table, of which it gathers only
    the active rows."""
    return sum(p.numel() * p.element_size() for n, p in net.named_parameters() if n != "embed.weight")


def step_rows(net: Transformer, cfg: ModelConfig, ctx: BenchContext, canvases: tuple[int, ...], floor_ms: float) -> list[dict]:
    rows = []
    for canvas in canvases:
        ids = torch.randint(0, cfg.vocab_size, (1, canvas), device=ctx.device)
        _, cache = net(ids[:, : canvas - ACTIVE], return_cache=True)
        positions = torch.arange(canvas - ACTIVE, canvas, device=ctx.device)
        cached = time_ms(lambda: net(ids[:, canvas - ACTIVE:], positions=positions, cache=cache), ctx, 10)
        full = time_ms(lambda: net(ids), ctx, 5)
        rows.append({"canvas": canvas, "cached_ms": round(cached, 3), "full_ms": round(full, 3),
                     "floor_ms": round(floor_ms, 3), "ratio": round(cached / floor_ms, 2),
                     "met": cached / floor_ms <= FLOOR_TARGET})
    return rows


def projected(ctx: BenchContext, ms_per_step: float) -> dict:
    """7B tokens/s if it committed as many tokens per forward as dcode-mini's best threshold
    schedule did on single-line holes in the speed section."""
    try:
        per_fwd = ctx.results["speed"]["models"]["dcode-mini"]["holes"]["single-line"]["target"]["tokens_per_forward"]
    except (KeyError, TypeError):
        return {"skipped": "the speed section has no single-line threshold figure for dcode-mini"}
    return {"tokens_per_forward": per_fwd, "ms_per_step": ms_per_step,
            "tokens_per_s": round(per_fwd * 1000 / ms_per_step, 1), "mercury_coder_mini_h100": MERCURY_CODER_MINI_TOK_S}


def step_7b_section(ctx: BenchContext) -> tuple[dict, list[str]]:
    cfg, canvases = (QUICK_SHAPE, (64, 128)) if ctx.quick else (DIFFUCODER_7B, (256, 512, 1024))
    dtype = torch.float32 if ctx.device.type == "cpu" else torch.bfloat16  # bf16 matmuls crawl on most CPUs
    bandwidth = copy_bandwidth(ctx)
    with torch.device(ctx.device):
        net = Transformer(cfg).to(dtype).eval()
    weights = read_bytes(net)
    floor_ms = weights / bandwidth * 1000
    with torch.inference_mode():
        rows = step_rows(net, cfg, ctx, canvases, floor_ms)
    del net
    middle = rows[len(rows) // 2]
    result = {"status": target_status([r["met"] for r in rows]), "shape": "quick" if ctx.quick else "DiffuCoder-7B / Dream-7B",
              "dtype": str(dtype).removeprefix("torch."), "params": cfg.num_parameters(), "weight_bytes_read": weights,
              "copy_bandwidth_gb_s": round(bandwidth / 1e9, 1), "active": ACTIVE, "rows": rows,
              "projection": projected(ctx, middle["cached_ms"])}
    lines = [f"  {result['shape']}, {result['dtype']}, {weights / 1e9:.2f} GB read per step, "
             f"copy bandwidth {bandwidth / 1e9:.0f} GB/s",
             f"  {'canvas':>6} {'cached ms':>10} {'full ms':>9} {'floor ms':>9} {'ratio':>6}  target <= {FLOOR_TARGET}"]
    lines += [f"  {r['canvas']:6d} {r['cached_ms']:10.3f} {r['full_ms']:9.3f} {r['floor_ms']:9.3f} {r['ratio']:6.2f}  "
              f"{met_word(r['met'])}" for r in rows]
    p = result["projection"]
    lines.append(f"  projection: skipped: {p['skipped']}" if "skipped" in p else
                 f"  projected {result['shape']}: {p['tokens_per_forward']:.2f} tokens/forward x {1000 / p['ms_per_step']:.1f} steps/s "
                 f"({middle['canvas']}-position canvas) = {p['tokens_per_s']:.0f} tokens/s "
                 f"(Mercury Coder Mini: {MERCURY_CODER_MINI_TOK_S} on an H100)")
    return result, lines


# ------------------------------------------------------------------------------------ training


def shipped_shape(name: str) -> ModelConfig | str:
    root = shipped_weights_root()
    path = root / name / "config.json" if root is not None else None
    if path is None or not path.is_file():
        return f"{name} is not in weights/"
    return ModelConfig.from_dict(read_config_json(path), source=str(path))


def train_throughput(mcfg: ModelConfig, ctx: BenchContext, seq_len: int, batch: int, steps: int) -> dict:
    """dcode's training step (as in dcode/train/run.py's loop) on random tokens."""
    dev = ctx.device
    cuda = dev.type == "cuda"
    torch.manual_seed(0)
    net = Transformer(mcfg).to(dev).train()
    opt = make_optimizer(net, TrainConfig(data_dir="", out_dir=""), fused=cuda)
    model = torch.compile(net) if cuda else net
    # No tokenizer needed: no line ends means holes fall back to MDLM rows; the cost is the same.
    info = TokenInfo(torch.zeros(mcfg.vocab_size, dtype=torch.bool), torch.zeros(mcfg.vocab_size, dtype=torch.bool),
                     mcfg.mask_id, mcfg.pad_id)
    gen = torch.Generator().manual_seed(0)
    clean = torch.randint(3, mcfg.vocab_size, (batch, seq_len), generator=gen)
    # On the device before timing: this measures the GPU's step, not the CPU-side corruption.
    batches = [_to(corrupt(clean, info, MixConfig(), gen), dev) for _ in range(2)]

    def step(i: int) -> None:
        batch = batches[i % 2]
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            logits = model(batch.inputs)
        loss, _ = diffusion_loss(logits, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    start = time.perf_counter()
    for i in range(2):  # compile and allocator warm-up
        step(i)
    ctx.sync()
    warm_s = time.perf_counter() - start
    start = time.perf_counter()
    for i in range(steps):
        step(i)
    ctx.sync()
    tok_s = batch * seq_len * steps / (time.perf_counter() - start)
    peak = device_peak(dev)
    mfu = tok_s * train_flops_per_token(mcfg, seq_len) / peak.flops if peak.flops else None
    return {"params": mcfg.num_parameters(), "seq_len": seq_len, "batch": batch, "steps": steps,
            "warmup_compile_s": round(warm_s, 1), "tokens_per_s": round(tok_s), "mfu": round(mfu, 4) if mfu else None,
            "peak": peak.label, "met": mfu >= MFU_TARGET if mfu else None}


def training_section(ctx: BenchContext) -> tuple[dict, list[str]]:
    # (seq_len, batch, timed steps): dcode-small trains at 1024-token windows, dcode-mini at 512.
    sizes = {"dcode-mini": (64, 2, 2) if ctx.quick else (512, 64, 20), "dcode-small": (1024, 16, 10)}
    runs: dict[str, dict] = {}
    lines = [f"  {'shape':<12} {'params':>8} {'seq x batch':>12} {'tok/s':>10} {'MFU':>6} {'warm-up s':>9}  target MFU >= {MFU_TARGET:.0%}"]
    for name, (seq_len, batch, steps) in sizes.items():
        shape = shipped_shape(name)
        if ctx.quick and name != "dcode-mini":
            shape = "quick mode: dcode-mini's shape only"
        elif ctx.left() < 45:  # a compiled training step takes about that long to warm up
            shape = f"time budget ran out ({max(0.0, ctx.left()):.0f} s left)"
        if isinstance(shape, str):
            runs[name] = {"skipped": shape}
            lines.append(f"  {name:<12} skipped: {shape}")
            continue
        r = runs[name] = train_throughput(shape, ctx, seq_len, batch, steps)
        mfu = f"{r['mfu']:6.1%}" if r["mfu"] is not None else f"{'-':>6}"
        lines.append(f"  {name:<12} {r['params'] / 1e6:7.1f}M {f'{seq_len} x {batch}':>12} {r['tokens_per_s']:10,d} {mfu} "
                     f"{r['warmup_compile_s']:9.1f}  {met_word(r['met'])}")
        if ctx.device.type == "cuda":
            torch.cuda.empty_cache()
    lines.append(f"  {device_peak(ctx.device).note}")
    return {"status": target_status([r.get("met") for r in runs.values()]), "runs": runs}, lines
