"""Linear datamodeling score (LDS) of corpus-scale influence on a small language model, ours beside peers.

    OMP_NUM_THREADS=1 PYTHONPATH=. python bench/lds.py --m 20 --lr 0.05 --out results/lds.json   # every method, one run: ≈ 25 min
    OMP_NUM_THREADS=1 PYTHONPATH=. python bench/lds.py --methods dattri-grad-dot --reuse                # add rows to an earlier run
    (--quick: a 2-minute smoke run on 40 documents and 8 subsets)

Corpus: N paragraphs of Python's own documentation (`pydoc_data.topics`, which ships with Python), each cut to
L tokens. Model: the tiny GPT-2 (`ias_nb.models.load_tiny_gpt2`, trained on that text), its Conv1D layers turned
into the equal nn.Linear layers (`conv1d_as_linear`) so that every method sees the same parameters: the
weights and biases of the 16 linear layers of its 4 blocks (≈ 200k parameters; embeddings, norms frozen).
M random 50% subsets S; from the same start θ₀, each is fine-tuned by K steps of full-batch gradient descent
(learning rate η; deterministic, no seed needed beyond the subsets'). After each fine-tune we measure
  (a) the steer's functional f_s(θ) = Σ_x ⟨t_x, y_θ(x)⟩, t_x = α J_h(x) s fixed at θ₀ (s: a random unit vector at
      the middle block's output, x: held-out probe prompts, y: last-token logits), and
  (b) the mean loss on held-out query paragraphs.
Prediction: up-weighting z by ε moves a measurement f by ε ρ(z), ρ(z) = −⟨(H+λI)⁻¹∇f, ∇ℓ(z)⟩. Fine-tuning on S
is gradient descent on (1/|S|) Σ_{z∈S} ℓ(z), so f(θ_S) − f(θ₀) ≈ (1/|S|) Σ_{z∈S} ρ(z) (the same for every S up to
the factor): the prediction is Σ_{z∈S} ρ(z) = −Σ_{z∈S} score(z), score(z) = ⟨q̃, ∇ℓ(z)⟩. K steps of rate η on a
quadratic act like (H + λI)⁻¹ with λ ≈ 1/(ηK) on the curvature's small directions, so λ = 1/(ηK) for every method.
Ours: `ias_nb.corpus` (`document_scores` with its identity, CG or EK-FAC preconditioner); kronfluence's own pairwise
EK-FAC scores, the peer: bench/_kronfluence_peer.py (same Task train loss, same nn.Linear layers, same λ).
LDS = Spearman over the M subsets between prediction and measurement; ± a 95% bootstrap interval over subsets.
CG: the exact Gauss–Newton matrix estimated on the first `--cg-docs` documents, `--cg-iters` iterations (each
iteration is a pass over those documents; the warning prints the relative residual reached).
dattri 0.3: Grad-Dot (TracInAttributor, one checkpoint, unnormalised, restricted to the same parameters) runs but
costs ≈ 4 s per document here (most of a run's time; --reuse adds methods to an earlier run's subsets and measurements);
its DataInf (IFAttributorDataInf) fails inside dattri on this model (the error is printed in the table).
"""
import argparse, json, math, os, sys, time
from pathlib import Path
import numpy as np, scipy.stats, torch
import torch.nn.functional as F
sys.path.insert(0, str(Path(__file__).parent))
from ias_nb.corpus import (conv1d_as_linear, linear_modules, document_scores, steer_query, steer_shift,
                            identity_preconditioner, cg_preconditioner, ekfac_preconditioner, right_padded, trim_padding)
from ias_nb.alignment import text_losses
from _kronfluence_peer import kronfluence_scores
from ias_nb.models import load_tiny_gpt2

def paragraphs(tok, n, length, skip=0):
    "n paragraphs of Python's help text of at least `length` tokens, each cut to `length` tokens."
    from pydoc_data.topics import topics
    out = []
    for k in sorted(topics):
        for p in topics[k].split('\n\n'):
            ids = tok(' '.join(p.split()))['input_ids']
            if len(ids) >= length: out.append(tok.decode(ids[:length]))
    rng = np.random.default_rng(0); rng.shuffle(out)
    return out[skip:skip + n]

def fine_tune(model0, tok, docs, names, lr, steps, chunk=25):
    "θ_S: `steps` full-batch gradient-descent steps on the mean document loss of `docs`, parameters `names` only."
    m = __import__('copy').deepcopy(model0)
    params = [p for n, p in m.named_parameters() if n in names]
    for n, p in m.named_parameters(): p.requires_grad_(n in names)
    b = right_padded(tok, docs)
    for _ in range(steps):
        for p in params: p.grad = None
        for i in range(0, len(docs), chunk):
            rows = trim_padding([{k: v[j] for k, v in b.items()} for j in range(i, min(i + chunk, len(docs)))])
            (text_losses(m, rows).sum() / len(docs)).backward()
        with torch.no_grad():
            for p in params: p -= lr * p.grad
    return m.eval()

def measure(m, tok, probes, t, queries):
    "(f_s(θ), mean query loss) at the model m."
    from ias_nb.steering import lm_batch
    from ias_nb.jacobians import last_token_logits
    with torch.no_grad():
        f = (last_token_logits(m(**lm_batch(tok, probes))).double() * t).sum().item()
        loss = text_losses(m, right_padded(tok, queries)).mean().item()
    return f, loss

def dattri_scores(model, tok, docs, names, lam, probes, t, queries, kind):
    "dattri 0.3 scores (N,) for (f_s, query loss): 'grad-dot' (TracIn, one checkpoint) or 'datainf' (IF, DataInf)."
    from dattri.task import AttributionTask
    from dattri.algorithm.tracin import TracInAttributor
    from dattri.algorithm.influence_function import IFAttributorDataInf
    from torch.utils.data import DataLoader, TensorDataset
    from torch.func import functional_call
    bd, bq, bp = right_padded(tok, docs), right_padded(tok, queries), right_padded(tok, probes)
    V = t.shape[1]
    def loss_func(params, data):                              # one document: its mean next-token loss
        ids, am, _, _ = data
        logits = functional_call(model, params, (ids[None],)).logits[0, :-1]   # right padding: no mask needed
        tl = F.cross_entropy(logits, ids[1:], reduction='none'); w = (am[:-1] * am[1:]).to(tl.dtype)
        return (tl * w).sum() / w.sum()
    def target_func(params, data):                            # a query row: f_s term or query loss
        ids, am, tt, is_loss = data
        logits = functional_call(model, params, (ids[None],)).logits[0]
        w_last = am * torch.cat([1 - am[1:], am.new_ones(1)])     # 1 at the last real token (no data-dependent index)
        last = (w_last[:, None].to(logits.dtype) * logits).sum(0)
        return is_loss * loss_func(params, data) + (1 - is_loss) * (last * tt).sum()
    task = AttributionTask(loss_func=loss_func, target_func=target_func, model=model, checkpoints=model.state_dict())
    pad = lambda b, T: torch.nn.functional.pad(b, (0, T - b.shape[1]))
    T = max(bq['input_ids'].shape[1], bp['input_ids'].shape[1])
    qrows = TensorDataset(torch.cat([pad(bp['input_ids'], T), pad(bq['input_ids'], T)]),
                          torch.cat([pad(bp['attention_mask'], T), pad(bq['attention_mask'], T)]),
                          torch.cat([t.float(), torch.zeros(len(queries), V)]),
                          torch.cat([torch.zeros(len(probes)), torch.ones(len(queries))]))
    train = TensorDataset(bd['input_ids'], bd['attention_mask'], torch.zeros(len(docs), 1), torch.zeros(len(docs)))
    layer = list(names)
    if kind == 'grad-dot':
        att = TracInAttributor(task=task, weight_list=torch.ones(1), normalized_grad=False, layer_name=layer,
                               projector_kwargs=None)
    else:
        att = IFAttributorDataInf(task=task, layer_name=layer, regularization=lam)
    if kind != 'grad-dot': att.cache(DataLoader(train, batch_size=8))
    s = att.attribute(DataLoader(train, batch_size=8), DataLoader(qrows, batch_size=len(qrows))).double()  # N × rows
    return torch.stack([s[:, :len(probes)].sum(1), s[:, len(probes):].mean(1)])

def lds(pred, meas, n_boot=2000, seed=0):
    "Spearman(pred, meas) over subsets and its 95% bootstrap interval (resampling subsets)."
    rho = scipy.stats.spearmanr(pred, meas)[0]
    rng = np.random.default_rng(seed); M = len(pred); bs = []
    for _ in range(n_boot):
        i = rng.integers(0, M, M)
        if len(set(i)) > 2: bs.append(scipy.stats.spearmanr(pred[i], meas[i])[0])
    return rho, np.nanpercentile(bs, 2.5), np.nanpercentile(bs, 97.5)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--n', type=int, default=200); ap.add_argument('--m', type=int, default=20)
    ap.add_argument('--length', type=int, default=24); ap.add_argument('--steps', type=int, default=2)
    ap.add_argument('--lr', type=float, default=0.05); ap.add_argument('--cg-iters', type=int, default=5)
    ap.add_argument('--cg-docs', type=int, default=50)
    ap.add_argument('--reuse', action='store_true', help='take the subsets\' measurements from --out (same sizes) and add rows')
    ap.add_argument('--quick', action='store_true'); ap.add_argument('--out', default='results/lds.json')
    ap.add_argument('--methods', default='identity,cg,ekfac,kronfluence,dattri-grad-dot,dattri-datainf')
    a = ap.parse_args()
    if a.quick: a.n, a.m, a.cg_iters, a.cg_docs = 40, 8, 3, 20
    torch.manual_seed(0)
    base, tok = load_tiny_gpt2(progress=False)
    model = conv1d_as_linear(base).eval()
    mods = linear_modules(model)
    names = [n for m in mods for n in (m + '.weight', m + '.bias')]
    docs = paragraphs(tok, a.n, a.length); held = paragraphs(tok, 12, a.length, skip=a.n)
    probes, queries = [' '.join(h.split()[:8]) for h in held[:4]], held[4:]
    layer = f'transformer.h.{model.config.n_layer // 2 - 1}'
    s = torch.randn(model.config.n_embd, generator=torch.Generator().manual_seed(1)); s = s / s.norm() * 4.0
    t = steer_shift(model, tok, layer, s, probes).double()
    lam = 1 / (a.lr * a.steps)
    print(f"model: tiny GPT-2 (Conv1D → nn.Linear), {len(mods)} linear layers, "
          f"{sum(dict(model.named_parameters())[n].numel() for n in names):,} parameters scored and fine-tuned")
    print(f"corpus: N = {a.n} pydoc paragraphs × {a.length} tokens; M = {a.m} random 50% subsets; "
          f"K = {a.steps} full-batch GD steps, η = {a.lr}; λ = 1/(ηK) = {lam:.3g}; steer at {layer}, ‖s‖ = 4, "
          f"{len(probes)} probes, {len(queries)} query paragraphs")

    # ---- measurements: fine-tune on each subset
    rng = np.random.default_rng(0)
    subsets = [np.sort(rng.choice(a.n, a.n // 2, replace=False)) for _ in range(a.m)]
    t0 = time.perf_counter(); meas = []; old = None
    from tqdm.auto import tqdm
    if a.reuse:
        old = json.load(open(a.out))
        assert old['sizes']['N'] == a.n and old['sizes']['M'] == a.m and old['sizes']['K'] == a.steps and old['sizes']['lr'] == a.lr, old['sizes']
        meas, t_ft = np.array(old['measurements']), old['finetune_seconds']
        print(f"measurements reused from {a.out} ({old['command']})")
    else:
        for S in tqdm(subsets, desc='fine-tuning subsets'):
            meas.append(measure(fine_tune(model, tok, [docs[i] for i in S], names, a.lr, a.steps), tok, probes, t, queries))
        meas = np.array(meas); t_ft = time.perf_counter() - t0
    print(f"fine-tuning {a.m} subsets: {t_ft:.0f} s; f_s range {meas[:, 0].min():.3g}..{meas[:, 0].max():.3g}, "
          f"query loss {meas[:, 1].min():.4f}..{meas[:, 1].max():.4f} (start {measure(model, tok, probes, t, queries)})")

    # ---- scores: each method gives score(z) = ⟨q̃, ∇ℓ(z)⟩ for (f_s, query loss), shape 2 × N
    from ias_nb.steering import lm_batch
    def queries_grad():
        q_s = steer_query(model, tok, layer, s, probes, params=names)
        model.zero_grad(set_to_none=True)
        for p in model.parameters(): p.requires_grad_(True)
        sel = {n: p for n, p in model.named_parameters() if n in names}
        g = torch.autograd.grad(text_losses(model, right_padded(tok, queries)).mean(), list(sel.values()))
        return [q_s, {n: gi.detach() for n, gi in zip(sel, g)}]
    def ours(pre):
        qs = queries_grad(); P = pre()
        return document_scores(model, tok, docs, [P(q) for q in qs], batch_size=8, progress=False)
    runs = {
        'ours, identity': lambda: ours(lambda: identity_preconditioner(lam)),
        'ours, CG (GGN on cg_docs)': lambda: ours(lambda: cg_preconditioner(model, tok, docs[:a.cg_docs], lam, params=names, maxiter=a.cg_iters, tol=1e-6)),
        'ours, EK-FAC (kronfluence factors)': lambda: ours(lambda: ekfac_preconditioner(model, tok, docs, lam, modules=mods)),
        'kronfluence EK-FAC pairwise': lambda: torch.stack([
            kronfluence_scores(model, tok, docs, lam, dict(probes=right_padded(tok, probes), t=t.float()), modules=mods),
            kronfluence_scores(model, tok, docs, lam, dict(texts=queries), modules=mods) / len(queries)]),
        'dattri 0.3 Grad-Dot (TracIn)': lambda: dattri_scores(model, tok, docs, names, lam, probes, t, queries, 'grad-dot'),
        'dattri 0.3 DataInf (IF)': lambda: dattri_scores(model, tok, docs, names, lam, probes, t, queries, 'datainf'),
    }
    keys = dict(identity='ours, identity', cg='ours, CG (GGN on cg_docs)', ekfac='ours, EK-FAC (kronfluence factors)',
                kronfluence='kronfluence EK-FAC pairwise', **{'dattri-grad-dot': 'dattri 0.3 Grad-Dot (TracIn)',
                'dattri-datainf': 'dattri 0.3 DataInf (IF)'})
    rows = []
    for key in a.methods.split(','):
        name = keys[key]; t1 = time.perf_counter()
        try: sc = torch.as_tensor(runs[name]()).double().reshape(2, -1).numpy()
        except Exception as e:
            print(f"{name}: failed — {type(e).__name__}: {str(e)[:300]}"); rows.append(dict(method=name, error=f"{type(e).__name__}: {e}")); continue
        sec = time.perf_counter() - t1
        r = dict(method=name, seconds=sec)
        for j, what in enumerate(['steer f_s', 'query loss']):
            pred = np.array([-sc[j, S].sum() for S in subsets])       # Σ_{z∈S} ρ(z), ρ = −score
            r[what] = lds(pred, meas[:, j])
        rows.append(r); print(f"  {name}: {sec:.1f} s, LDS f_s {r['steer f_s'][0]:+.3f}, loss {r['query loss'][0]:+.3f}", flush=True)

    cmd = 'OMP_NUM_THREADS=1 PYTHONPATH=. python ' + ' '.join(sys.argv)
    if old is not None:                                  # earlier rows of the same measurements first
        done = {r['method'] for r in rows}
        rows = [dict(r, command=old['command']) for r in old['rows'] if r['method'] not in done] + [dict(r, command=cmd) for r in rows]
        cmd = old['command'] + ' ; then ' + cmd
    print(f"\n{cmd}\nLDS (Spearman over {a.m} subsets, 95% bootstrap interval), N = {a.n}, L = {a.length}, K = {a.steps}, λ = {lam:.3g}")
    print(f"{'method':38} {'LDS steer f_s':>24} {'LDS query loss':>24} {'seconds':>8}")
    for r in rows:
        if 'error' in r: print(f"{r['method']:38} failed: {r['error'][:80]}"); continue
        f = lambda v: f"{v[0]:+.3f} [{v[1]:+.2f}, {v[2]:+.2f}]"
        print(f"{r['method']:38} {f(r['steer f_s']):>24} {f(r['query loss']):>24} {r['seconds']:8.1f}")
    Path(a.out).parent.mkdir(exist_ok=True, parents=True)
    json.dump(dict(command=cmd, sizes=dict(N=a.n, M=a.m, L=a.length, K=a.steps, lr=a.lr, damping=lam, layer=layer,
                   probes=len(probes), queries=len(queries), cg_maxiter=a.cg_iters, cg_docs=a.cg_docs), corpus_source='ias_nb.corpus',
                   finetune_seconds=t_ft, measurements=meas.tolist(), rows=rows), open(a.out, 'w'), indent=1, default=float)

if __name__ == '__main__': main()
