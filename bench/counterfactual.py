"""Counterfactual attribution benchmark (DESIGN §15): does a method that traces a steer to documents find the
documents that *training on* moves the model along the steer, better than a similarity search does?

    OMP_NUM_THREADS=1 PYTHONPATH=. python bench/counterfactual.py            # the full grid: 8 concepts × 2 seeds
    OMP_NUM_THREADS=1 PYTHONPATH=. python bench/counterfactual.py --quick    # 2 concepts × 1 seed, fewer draws

Model: the LDS bench's small GPT-2 (2 blocks, width 64, word-level vocabulary), pretrained on Python's help text
outside the corpus (θ₀); the concepts' words that the help text lacks are in the vocabulary, untrained. Corpus:
background help paragraphs, 8 novel concepts × 24 planted documents of varied form, and each concept's 24 inert
twins (same forms, other texts, loss weight 0). Fine-tune: Adam on the weighted loss over a batch sequence fixed by
the seed (`ias_nb.validation.weighted_train`), the token embedding (tied to the output layer) and every linear layer
of both blocks (position embeddings and norms frozen), so the steer's layer (block 0's output) and everything after it
read what was learned; the gradient methods score the same parameters (TrackStar: the linear layers only). Per concept × seed (a cell): the
CAA vector of 8 contrast pairs at the fine-tuned model, its centred shift t on 12 held-out probe stems, the
measurement f_s(θ) = Σ_x ⟨t_x, y_θ(x)⟩ and the held-out pairs' margin; the gate (fine-tune moves f_s ≥ 3× what the
background-only fine-tune does). Every method ranks all documents; per gated cell: (a) leave-top-k-out retraining
(same seed and batches, the top k at weight 0): the drop of f_s and of the margin as a share of the oracle's drop
(all 24 planted documents at weight 0), beside random k-sets; (b) tail-patch: one step of the fine-tune's own Adam on
the top k, gain of f_s and of the margin against the zero-gradient step; (c) precision@k, AP (chance among documents of the same form)
and the inert twins' median rank. Summary: mean over gated cells with bootstrap intervals clustered by concept, and
each method minus the best activation baseline, paired by cell. Resumable: each finished cell is written to the JSON
at once, and a re-run with the same settings skips it.
"""
import argparse, json, os, sys, time
from pathlib import Path
import numpy as np, torch
from tqdm.auto import tqdm
from ias_nb.validation import (counterfactual_concepts, counterfactual_corpus, word_tokenizer, help_text_split,
                               pretrained_start, weighted_train, along_steer, pair_margin, learned, tail_patch,
                               retrieval)
from ias_nb.precondition import per_document_gradients, adam_second_moments, trackstar_scores
from ias_nb.corpus import (linear_modules, right_padded, centred, steer_shift, identity_preconditioner,
                           ekfac_factors, EKFACPreconditioner, cg_preconditioner, influence_queries, random_queries,
                           document_scores, split_scores, rho_scores, l1_scores, unit_scores, logit_norm_scores,
                           deflated_scores, hidden_cosines, projection_difference, readout_query, contrast_gradient,
                           mean_eigenvalue_damping)
from ias_nb.steering import caa_vector
from ias_nb.experiments import cluster_bootstrap

BASELINES = ('cosine', 'projection_difference')
SHARES = ('f_share', 'margin_share', 'tail_patch_share', 'tail_patch_margin_share')   # each a share of the oracle's

def setup(a):
    "θ₀, tokenizer, corpus (dict of lists, texts cut to --max-length tokens), concepts, probes, trained names."
    data = counterfactual_concepts()
    concepts = dict(list(data['concepts'].items())[:a.concepts])
    pre_text, background, *_ = help_text_split(a.background)
    extra = ' '.join([d['text'] for c in concepts.values() for d in c['documents']]
                     + [s for c in concepts.values() for p in c['pairs'] for s in p]
                     + data['probes']['fit'] + data['probes']['heldout'])
    tok = word_tokenizer(pre_text, a.vocab, extra)
    cut = lambda ts: [tok.decode(tok(t)['input_ids'][:a.max_length]) for t in ts]
    corpus = counterfactual_corpus(concepts, cut(background), seed=0)
    corpus['text'] = cut(corpus['text'])
    model = pretrained_start(tok, pre_text, a.pretrain)
    names = ['transformer.wte.weight'] + [n for m in linear_modules(model) for n in (m + '.weight', m + '.bias')]
    return model, tok, corpus, concepts, data['probes'], names

def scores_of_seed(ft, tok, corpus, vectors, fits, names, keep, a) -> tuple:
    "Every method's scores (method → concepts × N) at the fine-tuned model `ft`, and notes on the solves."
    docs, trained = corpus['text'], [d for d, w in zip(corpus['text'], corpus['weight']) if w]
    layer, out, notes = a.layer, {}, {}
    mods = linear_modules(ft)
    factors = ekfac_factors(ft, tok, trained, mods, batch_size=16)
    mean_eig = mean_eigenvalue_damping(factors, share=1.0)
    pre = {'': identity_preconditioner(1.0)}
    for mult in a.lambdas:
        pre['_ekfac' if mult == 0.1 else f'_ekfac_{mult:g}'] = EKFACPreconditioner(ft, factors, mult * mean_eig)
    notes['damping'] = f"EK-FAC λ = 0.1 × mean eigenvalue = {0.1 * mean_eig:.3g}; sweep × {a.lambdas}"
    cg = cg_preconditioner(ft, tok, trained[:a.cg_docs], 0.1 * mean_eig, params=names, maxiter=a.cg_iters, tol=1e-4,
                           batch_size=16, progress=False)
    pre['_cg'] = cg
    C = len(vectors)
    for suffix, P in tqdm(pre.items(), desc='scoring passes', leave=False):
        full = suffix in ('', '_ekfac')                      # the sketch methods under identity and EK-FAC; ρ and contrast under every one
        k = a.sketch if full else 1
        queries, sts = [], []
        for c, v in enumerate(vectors):
            q, St = influence_queries(ft, tok, layer, v, fits[c]['probes'], P, names, k=k,
                                      positive=fits[c]['pos'], negative=fits[c]['neg'])
            queries += q; sts.append(St)
        R = random_queries(ft, names, a.k_param) if full else []
        X = document_scores(ft, tok, docs, queries + R, batch_size=16, progress=False).cpu()
        RG = X[len(queries):]
        for c in range(C):
            si = split_scores(X[c * (k + 1):(c + 1) * (k + 1)], sts[c], True, RG)
            ms = dict(rho=rho_scores(si))
            if suffix == '': ms |= dict(contrast=si.contrast, l1=l1_scores(si), unit=unit_scores(si),
                                        logit_norm=logit_norm_scores(si), deflated=deflated_scores(si, 1))
            if suffix == '_ekfac': ms |= dict(contrast=si.contrast, unit=unit_scores(si))
            for m, s in ms.items(): out.setdefault(m + suffix, []).append(s.double().numpy())
    res = [r.residuals[-1] for r in cg.records]
    notes['cg'] = (f"GGN of {min(a.cg_docs, len(trained))} trained documents, ≤ {a.cg_iters} iterations, tol 1e-4: "
                   f"{sum(r.converged for r in cg.records)} of {len(res)} solves converged; relative residual median "
                   f"{np.median(res):.2g} (range {min(res):.2g}–{max(res):.2g})"
                   + ("" if any(r.converged for r in cg.records) else ": a truncated Krylov filter, not (G + λI)⁻¹"))
    # TrackStar: Adam second moments of this fine-tune, unit-normalised, the common direction removed (linear layers:
    # per-document gradients are read from nn.Linear layers; the tied embedding is left out of this method)
    lin = [n for n in names if n != 'transformer.wte.weight']
    G = per_document_gradients(ft, tok, docs, lin, batch_size=16)
    v = adam_second_moments(keep['opt'], ft, lin)
    flat = lambda q: torch.cat([q[n].flatten().double() for n in lin])   # the columns of G, in `lin` order
    qs = [flat(readout_query(ft, tok, f['probes'], f['t'], lin)) for f in fits]
    qc = [flat(contrast_gradient(ft, tok, f['pos'], f['neg'], lin)) for f in fits]
    notes['trackstar'] = "TrackStar rows: the linear layers' parameters (the tied embedding is not in the per-document gradients)"
    out['trackstar'] = list(trackstar_scores(G, torch.stack(qs), v).numpy())
    out['trackstar_contrast'] = list(trackstar_scores(G, torch.stack(qc), v).numpy())
    V = torch.stack(vectors)
    out['cosine'] = list(hidden_cosines(ft, tok, layer, docs, V).numpy())
    out['projection_difference'] = list(projection_difference(ft, tok, layer, docs, V).numpy())
    return {m: np.stack(s) for m, s in out.items()}, notes

_POOL = None   # what the forked workers read: (θ₀, batch, names, settings, seed, measure)
def _retrain(weights):
    model0, batch, names, a, seed, measure = _POOL
    return measure(weighted_train(model0, batch, weights, names, a.lr, a.epochs, a.batch, seed=seed))

def retrain_all(model0, batch, names, a, seed, weight_sets:list, measure) -> list:
    "measure(θ_w) for each weight vector, in `a.workers` forked one-thread processes."
    import multiprocessing as mp
    global _POOL
    _POOL = (model0, batch, names, a, seed, measure)
    if a.workers > 1:
        with mp.get_context('fork').Pool(a.workers) as pool:
            return list(tqdm(pool.imap(_retrain, weight_sets), total=len(weight_sets), desc='retraining', leave=False))
    return [_retrain(w) for w in tqdm(weight_sets, desc='retraining', leave=False)]

def cell_metrics(c, name, scores, corpus, base_w, f, a, retrain, tp, rng) -> dict:
    "All metrics of one gated cell: leave-out, tail-patch and retrieval for every method, the oracle and random sets."
    N = len(base_w); concept = np.array(corpus['concept']); twin = np.array(corpus['twin'])
    relevant = (concept == name) & ~twin
    same_form = concept != ''
    sets = {m: np.argsort(-s[c], kind='stable')[:a.k] for m, s in scores.items()}
    sets['oracle'] = np.flatnonzero(relevant)
    for j in range(a.random): sets[f'random {j}'] = rng.choice(N, a.k, replace=False)
    distinct = {}
    for m, idx in sets.items(): distinct.setdefault(tuple(sorted(idx.tolist())), []).append(m)
    weight_sets = []
    for key in distinct:
        w = base_w.copy(); w[list(key)] = 0; weight_sets.append(w)
    measured = retrain(weight_sets)
    lo = {m: measured[i] for i, ms in enumerate(distinct.values()) for m in ms}
    tp_measured = {key: tp(list(key)) for key in distinct}
    tp_all = {m: tp_measured[key] for key, ms in distinct.items() for m in ms}
    tp0 = tp([])
    out = {}
    for m in sets:
        r = dict(f_drop=f['ft'][0] - lo[m][0], margin_drop=f['ft'][1] - lo[m][1], tail_patch=tp_all[m][0] - tp0[0],
                 tail_patch_margin=tp_all[m][1] - tp0[1], removed_trained=int(base_w[sets[m]].sum()))
        if m in scores: r |= retrieval(scores[m][c], relevant, same_form, twin, a.k)
        out[m] = r
    oracle = out['oracle']
    for r in out.values():
        r['f_share'] = r['f_drop'] / oracle['f_drop'] if oracle['f_drop'] > 0 else None
        r['margin_share'] = r['margin_drop'] / oracle['margin_drop'] if oracle['margin_drop'] > 0 else None
        r['tail_patch_share'] = r['tail_patch'] / oracle['tail_patch'] if oracle['tail_patch'] > 0 else None
        r['tail_patch_margin_share'] = (r['tail_patch_margin'] / oracle['tail_patch_margin']
                                        if oracle['tail_patch_margin'] > 0 else None)
    return out

def summary(cells:list, methods:list, a) -> dict:
    "Per method over gated cells: mean with concept-clustered intervals, and the paired difference to the best baseline."
    gated = [c for c in cells if c['gate']]
    if not gated: return dict(gated=0, cells=len(cells), oracle_drop_positive={}, best_baseline={}, chance=float('nan'), rows=[])
    cl = np.array([c['concept'] for c in gated])
    def col(m, key):
        nan = lambda v: np.nan if v is None else v
        if m == 'random': return np.array([np.mean([nan(c['metrics'][f'random {j}'][key]) for j in range(a.random)]) for c in gated], float)
        return np.array([np.nan if c['metrics'][m].get(key) is None else c['metrics'][m][key] for c in gated], float)
    rows = {}
    for m in methods + ['random']:
        r = {}
        for key in SHARES + ('precision', 'ap', 'twin_rank'):
            if m == 'random' and key in ('precision', 'ap', 'twin_rank'): continue
            x = col(m, key)
            ok = ~np.isnan(x)
            r[key] = list(cluster_bootstrap(x[ok], cl[ok])) if ok.sum() else None
        rows[m] = r
    best_base = {}
    for key in SHARES:                                  # the best activation baseline on each measure, paired by cell
        have = [m for m in BASELINES if rows[m][key]]
        if not have: continue
        b = best_base[key] = max(have, key=lambda m: rows[m][key][0])
        for m in methods + ['random']:
            d = col(m, key) - col(b, key); ok = ~np.isnan(d)
            rows[m][key + '_minus_best_baseline'] = list(cluster_bootstrap(d[ok], cl[ok])) if ok.sum() else None
    chance = float(np.mean([c['metrics']['rho']['chance'] for c in gated]))
    defined = {k: int(sum(c['metrics']['oracle'][k] > 0 for c in gated)) for k in ('f_drop', 'margin_drop')}
    return dict(gated=len(gated), cells=len(cells), oracle_drop_positive=defined, best_baseline=best_base, chance=chance,
                rows=[dict(method=m, **r) for m, r in sorted(rows.items(), key=lambda kv: -kv[1]['margin_share'][0] if kv[1]['margin_share'] else np.inf)])

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--concepts', type=int, default=8); ap.add_argument('--seeds', type=int, default=2)
    ap.add_argument('--background', type=int, default=300); ap.add_argument('--k', type=int, default=32)
    ap.add_argument('--random', type=int, default=5, help='random k-sets per cell')
    ap.add_argument('--epochs', type=int, default=10); ap.add_argument('--lr', type=float, default=3e-3)
    ap.add_argument('--batch', type=int, default=32); ap.add_argument('--pretrain', type=int, default=300)
    ap.add_argument('--vocab', type=int, default=2000); ap.add_argument('--max-length', type=int, default=32)
    ap.add_argument('--layer', default='transformer.h.0'); ap.add_argument('--sketch', type=int, default=16)
    ap.add_argument('--k-param', type=int, default=16); ap.add_argument('--lambdas', type=float, nargs='+', default=[0.1, 0.01, 1.0])
    ap.add_argument('--cg-iters', type=int, default=20); ap.add_argument('--cg-docs', type=int, default=128)
    ap.add_argument('--workers', type=int, default=min(2, os.cpu_count()))
    ap.add_argument('--quick', action='store_true'); ap.add_argument('--out', default='results/counterfactual.json')
    a = ap.parse_args()
    if a.quick: a.concepts, a.seeds, a.random, a.background, a.cg_iters = 2, 1, 2, 100, 3
    t_start = time.perf_counter(); torch.manual_seed(0)
    settings = {k: v for k, v in vars(a).items() if k not in ('workers', 'out')}
    old = json.load(open(a.out)) if Path(a.out).exists() else None
    same = lambda x: {k: v for k, v in x.items() if k != 'seeds'}       # cells are per seed: more or fewer seeds reuse them
    cells = [c for c in old['cells'] if c['seed'] < a.seeds] if old and same(old['settings']) == same(settings) else []
    cells_reused = bool(cells)
    spent = old['run_seconds'] if cells else 0.0
    notes = old.get('notes', {}) if cells else {}
    model, tok, corpus, concepts, probes, names = setup(a)
    batch, base_w = right_padded(tok, corpus['text']), np.array(corpus['weight'], dtype=np.float32)
    print(f"θ₀: GPT-2 2×64 over {len(tok)} words; corpus {len(base_w)} documents ({int(base_w.sum())} trained, "
          f"{sum(corpus['twin'])} inert twins), {len(concepts)} concepts; {sum(dict(model.named_parameters())[n].numel() for n in names):,} parameters trained", flush=True)
    def save(methods):
        cmd = 'OMP_NUM_THREADS=1 PYTHONPATH=. python ' + ' '.join(sys.argv)
        res = dict(command=old['command'] + ' ; resumed by: ' + cmd if cells_reused else cmd, settings=settings,
                   run_seconds=spent + time.perf_counter() - t_start, cores=f'{os.cpu_count()} CPU cores, {a.workers} training processes',
                   load_average=os.getloadavg()[0], notes=notes, cells=cells,
                   summary=summary(cells, methods, a) if methods else None)
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(a.out).with_suffix('.tmp'); json.dump(res, open(tmp, 'w'), indent=1, default=float); tmp.replace(a.out)
        return res
    methods = sorted({m for c in cells for m in c['metrics'] if not m.startswith('random') and m != 'oracle'})
    for seed in range(a.seeds):
        if sum(c['seed'] == seed for c in cells) == len(concepts): print(f'seed {seed}: done, skipped'); continue
        t0 = time.perf_counter(); keep = {}
        ft = weighted_train(model, batch, base_w, names, a.lr, a.epochs, a.batch, seed=seed, keep=keep)
        bg = weighted_train(model, batch, base_w * (np.array(corpus['concept']) == ''), names, a.lr, a.epochs, a.batch, seed=seed)
        fits, vectors, measures = [], [], []
        for name, c in concepts.items():
            pos, neg = zip(*c['pairs'])
            v = caa_vector(ft, tok, a.layer, list(pos[:8]), list(neg[:8])).detach()
            t_fit = centred(steer_shift(ft, tok, a.layer, v, probes['fit']).double())
            t_held = centred(steer_shift(ft, tok, a.layer, v, probes['heldout']).double())
            fits.append(dict(probes=probes['fit'], t=t_fit.float(), pos=list(pos[:8]), neg=list(neg[:8])))
            vectors.append(v)
            measures.append(lambda m, t=t_held, p=list(pos[8:]), n=list(neg[8:]):
                            (along_steer(m, tok, probes['heldout'], t), pair_margin(m, tok, p, n)))
        print(f'seed {seed}: fine-tunes {time.perf_counter() - t0:.0f} s', flush=True)
        t1 = time.perf_counter()
        scores, notes[f'seed {seed}'] = scores_of_seed(ft, tok, corpus, vectors, fits, names, keep, a)
        print(f'seed {seed}: scores {time.perf_counter() - t1:.0f} s; {notes[f"seed {seed}"]["cg"]}', flush=True)
        methods = sorted(scores)
        for c, name in enumerate(tqdm(list(concepts), desc=f'seed {seed} cells')):
            if any(x['seed'] == seed and x['concept'] == name for x in cells): continue
            t2 = time.perf_counter()
            measure = measures[c]
            f = dict(base=measure(model), ft=measure(ft), bg=measure(bg))
            gate = learned(f['base'][0], f['ft'][0], f['bg'][0])
            cell = dict(seed=seed, concept=name, gate=gate, f=f)
            if gate:
                rng = np.random.default_rng(1000 * seed + c)
                retrain = lambda ws: retrain_all(model, batch, names, a, seed, ws, measure)
                tp = lambda rows: measure(tail_patch(ft, keep, batch, rows))
                cell['metrics'] = cell_metrics(c, name, scores, corpus, base_w, f, a, retrain, tp, rng)
            else:
                concept = np.array(corpus['concept']); twin = np.array(corpus['twin'])
                cell['metrics'] = {m: retrieval(s[c], (concept == name) & ~twin, concept != '', twin, a.k) for m, s in scores.items()}
            cell['seconds'] = time.perf_counter() - t2
            cells.append(cell); save(methods)
            print(f"seed {seed} {name}: gate {gate} (f: θ₀ {f['base'][0]:.2f}, fine-tune {f['ft'][0]:.2f}, background-only "
                  f"{f['bg'][0]:.2f}); {cell['seconds']:.0f} s", flush=True)
    res = save(methods)
    s = res['summary']
    print(f"\n{s['gated']} of {s['cells']} cells pass the gate (positive oracle drop, where shares are defined: "
          f"{s['oracle_drop_positive']}); best activation baseline per measure: {s['best_baseline']}; precision chance (same form) {s['chance']:.3f}")
    fmt = lambda x: '–' if x is None else f'{x[0]:+.2f} [{x[1]:+.2f}, {x[2]:+.2f}]'
    print(f"{'method':22s} " + ' '.join(f'{k:>24s}' for k in ('f_s leave-out', 'margin leave-out', 'f_s tail-patch', 'margin tail-patch'))
          + f" {'prec@k':>6s} {'twins':>6s}")
    for r in s['rows']:
        one = lambda key: '' if r.get(key) is None else f"{r[key][0]:.2f}"
        print(f"{r['method']:22s} " + ' '.join(f'{fmt(r[k]):>24s}' for k in SHARES) + f" {one('precision'):>6s} {one('twin_rank'):>6s}")
    print(f"wrote {a.out} ({res['run_seconds']:.0f} s)")

if __name__ == '__main__':
    main()
