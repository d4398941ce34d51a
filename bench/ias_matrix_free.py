"""Dense vs matrix-free IAS on a real LM: time, peak memory and agreement of Δh.

    python bench/ias_matrix_free.py            # SmolLM2-135M (offline) and a small GPT-2
    python bench/ias_matrix_free.py --models gpt2-small

Each (model, method) runs in its own process; peak memory is the largest resident set size above the
level before the solve (the model and inputs already loaded), sampled every 5 ms. Methods: `jacrev` (dense J_h by reverse mode, m VJPs, then the SVD solve), `jvp-columns`
(dense J_h by d batched JVPs, then the SVD solve) and `lsqr` (matrix-free: one JVP + one VJP per
iteration, J_h never formed). All solve the same damped IAS problem min ‖J_hΔh − v‖² + μ‖Δh‖².
"""
import argparse, json, os, subprocess, sys, threading, time
import torch

PROMPT = "The weather today is"
DAMPING = 1.0

def rss_mb() -> float:
    "Current resident set size of this process in MB."
    return int(open('/proc/self/statm').read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**20

class PeakMemory:
    "Peak RSS above the level at entry, sampled every 5 ms in a background thread."
    def __enter__(self):
        self.base, self.peak, self.done = rss_mb(), 0.0, False
        self.thread = threading.Thread(target=self._watch, daemon=True); self.thread.start(); return self
    def _watch(self):
        while not self.done: self.peak = max(self.peak, rss_mb() - self.base); time.sleep(0.005)
    def __exit__(self, *exc): self.done = True; self.thread.join()

def build(model_name):
    "Model, cut at a middle block of the residual stream, and a target v (logit shift of a gradient step)."
    from ias_nb.jacobians import LayerJacobians, last_token_logits
    from ias_nb.alignment import damped_gradient_update
    if model_name == 'smollm2':
        from ias_nb.models import load_smollm2
        model, tok = load_smollm2(); layer = 'model.layers.15'
        ids = tok(PROMPT, return_tensors='pt').input_ids
        text = tok("You are a wonderful, kind and thoughtful person.", return_tensors='pt').input_ids
    else:
        from transformers import GPT2Config, GPT2LMHeadModel
        torch.manual_seed(0)
        model = GPT2LMHeadModel(GPT2Config(n_layer=4, n_embd=128, n_head=4, vocab_size=8192, n_positions=64)).eval()
        layer = 'transformer.h.2'
        ids = torch.randint(0, 8192, (1, 6)); text = torch.randint(0, 8192, (1, 12))
    batch = dict(input_ids=ids, logits_to_keep=1)
    update = damped_gradient_update(model, dict(input_ids=text), damping=1.0)
    v = LayerJacobians(model, layer, batch, output=last_token_logits).logit_shift(update).detach()
    return LayerJacobians(model, layer, batch, output=last_token_logits, params=[]), v

def run(model_name, method, out):
    from ias_nb.duality import ias
    cut, v = build(model_name)
    with PeakMemory() as mem:
        t0 = time.perf_counter()
        if method == 'lsqr':
            r = ias(cut.J_h(), v, damping=DAMPING, atol=1e-7, maxiter=1000, with_gamma=False); extra = dict(iters=r.record.iters, converged=r.record.converged)
        else:
            if method == 'jacrev':
                from torch.func import jacrev
                J = jacrev(lambda d: cut.outputs(delta=d), chunk_size=256)(torch.zeros(cut.h.shape[-1]))
            else:
                J = cut.dense('J_h')
            r = ias(J, v, damping=DAMPING); extra = {}
        secs = time.perf_counter() - t0
    json.dump(dict(model=model_name, method=method, seconds=secs, peak_mb=mem.peak,
                   m=cut.y0.numel(), d=cut.h.shape[-1], delta_h=r.delta_h.double().tolist(), **extra), open(out, 'w'))

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--models', nargs='+', default=['gpt2-small', 'smollm2'])
    p.add_argument('--methods', nargs='+', default=['lsqr', 'jvp-columns', 'jacrev'])
    p.add_argument('--one', nargs=3, metavar=('MODEL', 'METHOD', 'OUT'), help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.one: return run(*a.one)
    for model in a.models:
        res = {}
        for method in a.methods:
            out = f'/tmp/ias_bench_{model}_{method}.json'
            subprocess.run([sys.executable, __file__, '--one', model, method, out], check=True)
            res[method] = json.load(open(out))
        ref = torch.tensor(res['lsqr']['delta_h'])
        print(f"\n{model}: m = {res['lsqr']['m']:,} outputs, d = {res['lsqr']['d']} (damped IAS, μ = {DAMPING}); "
              f"LSQR {res['lsqr']['iters']} iterations, converged = {res['lsqr']['converged']}")
        print(f"{'method':12} {'seconds':>9} {'peak MB':>9} {'rel. diff Δh vs lsqr':>21} {'time ÷ lsqr':>12} {'memory ÷ lsqr':>14}")
        for method, r in res.items():
            diff = (torch.tensor(r['delta_h']) - ref).norm() / ref.norm()
            print(f"{method:12} {r['seconds']:9.2f} {r['peak_mb']:9.0f} {diff:21.2e} {r['seconds'] / res['lsqr']['seconds']:12.1f} "
                  f"{max(r['peak_mb'], 1) / max(res['lsqr']['peak_mb'], 1):14.1f}")

if __name__ == '__main__': main()
