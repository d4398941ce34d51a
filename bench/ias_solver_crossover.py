"""Where `ias_vector`'s two solvers cross over: dense J_h (d batched JVPs, then one SVD) against LSQR (one JVP and
one VJP per iteration, J_h never formed), as the layer width d grows.

    OMP_NUM_THREADS=1 python bench/ias_solver_crossover.py [--widths 64 128 256 512 768] [--probes 4] [--vocab 4096]

Random GPT-2s (4 blocks, width d, real GPT-2 vocabulary cut to --vocab), steering block 1 for 4 probe prompts of
12 tokens, target v = J_θΔθ of a random update, ridge μ = --damping. Prints seconds per solver,
LSQR iterations, the time ratio and the agreement of the two vectors. Dense wins while d batched JVPs cost less
than 2·iterations sequential products and the m×d matrix fits in memory; its cost grows like d³, LSQR's like
iterations·d². Measured on a loaded 2-core CPU (default widths 64…768): LSQR/dense 2.0, 2.8, 1.8, 1.0, 1.2 with
about 95 iterations; on SmolLM2 at d = 576 (bench/ias_matrix_free.py) dense 4.9 s, LSQR 31.7 s (155 iterations).
`default_ias_solver` therefore solves densely up to d = 1024 when J_h fits in memory.
"""
import argparse, time
import torch
from transformers import GPT2Config, GPT2LMHeadModel
from ias_nb.jacobians import LayerJacobians, last_token_logits
from ias_nb.duality import ias

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--widths', type=int, nargs='+', default=[64, 128, 256, 512, 768])
    p.add_argument('--probes', type=int, default=4); p.add_argument('--vocab', type=int, default=4096)
    p.add_argument('--damping', type=float, default=1e-2)
    a = p.parse_args()
    print(f"random GPT-2, 4 blocks, vocab {a.vocab}, {a.probes} probes × 12 tokens, block 1, damping {a.damping}")
    print(f"{'d':>5} {'m':>7} {'dense s':>8} {'lsqr s':>8} {'iters':>6} {'lsqr/dense':>10} {'‖Δs‖/‖s‖':>10}")
    for d in a.widths:
        torch.manual_seed(0)
        model = GPT2LMHeadModel(GPT2Config(n_layer=4, n_embd=d, n_head=4, vocab_size=a.vocab, n_positions=64, bos_token_id=0, eos_token_id=0)).eval()
        ids = torch.randint(0, a.vocab, (a.probes, 12), generator=torch.Generator().manual_seed(1))
        cut = LayerJacobians(model, 'transformer.h.1', dict(input_ids=ids), output=last_token_logits)
        v = cut.J_theta().matvec(torch.randn(cut.n_params, generator=torch.Generator().manual_seed(2)) * 1e-3)
        t = time.perf_counter(); dense = ias(cut.dense('J_h'), v, damping=a.damping); t_dense = time.perf_counter() - t
        t = time.perf_counter(); free = ias(cut.J_h(), v, damping=a.damping, with_gamma=False); t_free = time.perf_counter() - t
        err = ((free.delta_h - dense.delta_h).norm() / dense.delta_h.norm()).item()
        print(f"{d:5d} {v.numel():7d} {t_dense:8.2f} {t_free:8.2f} {free.record.iters:6d} {t_free / t_dense:10.2f} {err:10.1e}")

if __name__ == '__main__': main()
