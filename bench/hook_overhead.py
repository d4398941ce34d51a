"""Decode speed of SmolLM2-135M with and without steering hooks, ours vs steering-vectors', one layer and two.

Prints tokens/s (best and median of interleaved repeats) and the ratios of the best runs (the least
disturbed by other load on the machine). Usage:
    python bench/hook_overhead.py [--device cpu|cuda] [--tokens 64] [--repeats 5] [--layer 15] [--layer2 20]
The two-layer rows steer --layer and --layer2 in one call (ours: `steer(model, {i: s, j: s})`).
steering-vectors is optional (`pip install --no-deps steering-vectors`); without it that row is skipped.
"""
import argparse, statistics, time
import torch
from ias_nb.models import load_smollm2
from ias_nb.steering import steer

def decode_speed(model, ids, tokens:int, ctx) -> float:
    "Greedy decode tokens/s with the KV cache inside the context manager `ctx()`."
    if ids.device.type == 'cuda': torch.cuda.synchronize()
    with ctx(), torch.no_grad():
        t0 = time.perf_counter()
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False)
        if ids.device.type == 'cuda': torch.cuda.synchronize()
        dt = time.perf_counter() - t0
    assert out.shape[1] == ids.shape[1] + tokens
    return tokens / dt

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--tokens', type=int, default=64); p.add_argument('--repeats', type=int, default=5)
    p.add_argument('--layer', type=int, default=15); p.add_argument('--layer2', type=int, default=20)
    a = p.parse_args()
    model, tok = load_smollm2(device=a.device)
    ids = tok("Write a short story about a lighthouse keeper.", return_tensors='pt').input_ids.to(a.device)
    vec = torch.randn(model.config.hidden_size, generator=torch.Generator().manual_seed(0)) * 0.1
    from contextlib import nullcontext
    runs = {'no hook': nullcontext, 'ias_nb steer': lambda: steer(model, f'model.layers.{a.layer}', vec, alpha=1.0),
            'ias_nb steer, 2 layers': lambda: steer(model, {a.layer: vec, a.layer2: vec}, alpha=1.0)}
    try:
        from steering_vectors import SteeringVector
        sv = SteeringVector({a.layer: vec.to(a.device)}, 'decoder_block')
        sv2 = SteeringVector({a.layer: vec.to(a.device), a.layer2: vec.to(a.device)}, 'decoder_block')
        runs['steering-vectors'] = lambda: sv.apply(model, multiplier=1.0)
        runs['steering-vectors, 2 layers'] = lambda: sv2.apply(model, multiplier=1.0)
    except ImportError: print("steering-vectors not installed: skipping its rows")
    decode_speed(model, ids, 8, nullcontext)                       # warm-up
    speeds = {k: [] for k in runs}
    for _ in range(a.repeats):                                     # interleaved, so drift hits every row alike
        for k, ctx in runs.items(): speeds[k].append(decode_speed(model, ids, a.tokens, ctx))
    best = {k: max(v) for k, v in speeds.items()}
    print(f"SmolLM2-135M on {a.device}, {a.tokens} greedy tokens with KV cache, {a.repeats} interleaved repeats, "
          f"steering model.layers.{a.layer} (2 layers: and model.layers.{a.layer2})")
    for k, v in speeds.items(): print(f"  {k:28} best {best[k]:7.1f} tokens/s, median {statistics.median(v):7.1f}")
    for ours in ('ias_nb steer', 'ias_nb steer, 2 layers'):
        print(f"overhead of {ours} vs no hook (best runs): {1 - best[ours] / best['no hook']:+.1%}  (time ratio {best['no hook'] / best[ours]:.3f})")
    for ours, theirs in (('ias_nb steer', 'steering-vectors'), ('ias_nb steer, 2 layers', 'steering-vectors, 2 layers')):
        if theirs in best: print(f"{ours} vs {theirs} (best runs): speed ratio {best[ours] / best[theirs]:.3f}")

if __name__ == '__main__': main()
