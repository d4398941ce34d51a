"""Counterfactual attribution benchmark (DESIGN §15): does a method that traces a steer to documents find the
documents that *training on* moves the model along the steer, better than a similarity search does?

    OMP_NUM_THREADS=1 PYTHONPATH=. python bench/counterfactual.py            # the full grid: 8 concepts × 2 seeds
    OMP_NUM_THREADS=1 PYTHONPATH=. python bench/counterfactual.py --quick    # 2 concepts × 1 seed, fewer draws
    OMP_NUM_THREADS=1 PYTHONPATH=. python bench/counterfactual.py --model smollm2 --concept-names velmora,grimble,kalvani,marzipet --seeds 1
    OMP_NUM_THREADS=1 PYTHONPATH=. python bench/counterfactual.py --bergson results/counterfactual.json   # + Bergson's TrackStar, seed 0

Bergson 2.5.1 (`pip install --no-deps bergson==2.5.1` and its imports: datasets, pyarrow, simple-parsing, torchopt,
jaxtyping, ml_dtypes, natsort, petname, …; its torchaudio and bitsandbytes are not needed on CPU) runs as its CLI's
`bergson trackstar` at each seed's fine-tune of the small LM (`bergson_trackstar`), written beside the earlier run's rows
of the same cells to results/counterfactual_bergson.json.

The SmolLM2-135M-Instruct confirmation (`--model smollm2`, results/counterfactual_smollm2.json) runs the same protocol
on the real model, cut to fit a shared CPU: 12 planted documents and 12 twins per concept (`--documents 24`: the first
24 texts of each list, every form present), 16 background paragraphs cut to 16 tokens, one epoch of Adam, k = 16; the steer read at
block `--layer` (default model.layers.3) and the fine-tune training the linear layers (attention and MLP weights)
of blocks 0 … `--train-blocks` − 1 (default 5: the steer's block, the blocks below it and the one above), embeddings
and norms frozen. Methods: ρ and the contrast under the identity and EK-FAC (λ = 0.1 × mean eigenvalue), the two
activation baselines; no CG, λ sweep or TrackStar (its per-document gradients of 17.7 M parameters do not fit).
Leave-top-k-out for `--leave-out` (default: both contrasts and both baselines; ρ: retrieval only), no tail-patch
(`--tail-patch 1` to add it), and the gate on the held-out pairs' margin (`--gate`): on SmolLM2 the background-only
fine-tune moves f_s as far as the full one or further, while the margin moves only under the full one. The
random k-sets are drawn once per seed and shared by the seed's cells (a retraining measures every concept), and
every retraining and tail-patch is cached on disk beside the JSON, so an interrupted run loses at most one.

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
import argparse, copy, json, os, sys, time
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

def setup_smollm2(a):
    "SmolLM2-135M-Instruct, its tokenizer, the corpus (background cut to --max-length tokens), concepts, probes, trained names."
    from ias_nb.models import load_causal_lm
    data = counterfactual_concepts()
    concepts = {n: data['concepts'][n] for n in a.concept_names} if a.concept_names else dict(list(data['concepts'].items())[:a.concepts])
    concepts = {n: c | dict(documents=c['documents'][:a.documents]) for n, c in concepts.items()}   # planted, twin, planted, …
    model, tok = load_causal_lm('smollm2')
    _, background, *_ = help_text_split(a.background)
    cut = lambda ts: [tok.decode(tok(t)['input_ids'][:a.max_length]) for t in ts]
    corpus = counterfactual_corpus(concepts, cut(background), seed=0)      # the background cut, the concepts' texts whole
    blocks = tuple(f'model.layers.{i}.' for i in range(a.train_blocks))
    names = [n for n, p in model.named_parameters() if n.startswith(blocks) and n.endswith('_proj.weight')]
    layer_index = int(a.layer.rsplit('.', 1)[1])
    if layer_index >= a.train_blocks:
        raise ValueError(f"the steer reads {a.layer} but only blocks 0..{a.train_blocks - 1} are trained")
    return model, tok, corpus, concepts, data['probes'], names

def scores_smollm2(ft, tok, corpus, vectors, fits, names, keep, a) -> tuple:
    "The SmolLM2 methods' scores (method → concepts × N): ρ and contrast under identity and EK-FAC, the two baselines."
    docs, trained = corpus['text'], [d for d, w in zip(corpus['text'], corpus['weight']) if w]
    out, notes = {}, {}
    mods = list(dict.fromkeys(n.rpartition('.')[0] for n in names))
    t0 = time.perf_counter()
    factors = ekfac_factors(ft, tok, trained, mods, batch_size=16)
    mean_eig = mean_eigenvalue_damping(factors, share=1.0)
    notes['damping'] = f"EK-FAC over {len(mods)} linear layers, λ = 0.1 × mean eigenvalue = {0.1 * mean_eig:.3g} ({time.perf_counter() - t0:.0f} s)"
    pre = {'': identity_preconditioner(1.0), '_ekfac': EKFACPreconditioner(ft, factors, 0.1 * mean_eig)}
    queries, sts = [], []                                  # both preconditioners' queries, scored in one pass
    for suffix, P in pre.items():
        for c, v in enumerate(vectors):
            q, St = influence_queries(ft, tok, a.layer, v, fits[c]['probes'], P, names, k=1,
                                      positive=fits[c]['pos'], negative=fits[c]['neg'])
            queries += q; sts.append((suffix, c, St))
    t0 = time.perf_counter()
    X = document_scores(ft, tok, docs, queries, batch_size=16, progress=False).cpu()
    notes['scoring pass'] = f"{len(queries)} queries over {len(docs)} documents: {time.perf_counter() - t0:.0f} s"
    del queries
    for i, (suffix, c, St) in enumerate(sts):
        si = split_scores(X[2 * i:2 * i + 2], St, True, torch.zeros(0, len(docs)))
        out.setdefault('rho' + suffix, []).append(rho_scores(si).double().numpy())
        out.setdefault('contrast' + suffix, []).append(si.contrast.double().numpy())
    V = torch.stack(vectors)
    out['cosine'] = list(hidden_cosines(ft, tok, a.layer, docs, V).numpy())
    out['projection_difference'] = list(projection_difference(ft, tok, a.layer, docs, V).numpy())
    return {m: np.stack(s) for m, s in out.items()}, notes

class MeasureCache:
    """Retrainings and tail-patches measured for every concept at once, kept on disk (`path`) per seed: the random
    k-sets are shared by a seed's cells, and an interrupted run resumes without redoing any."""
    def __init__(self, path, settings):
        self.path, self.settings = Path(path), settings
        old = json.load(open(self.path)) if self.path.exists() else {}
        self.data = old.get('data', {}) if old.get('settings') == settings else {}
    def get(self, seed, kind, key, compute):
        k = f'{seed} {kind} ' + ','.join(map(str, key))
        if k not in self.data:
            self.data[k] = compute()
            tmp = self.path.with_suffix('.tmp'); json.dump(dict(settings=self.settings, data=self.data), open(tmp, 'w')); tmp.replace(self.path)
        return self.data[k]

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

def seed_models(model, tok, batch, base_w, corpus, concepts, probes, names, a, seed) -> tuple:
    """The seed's fine-tune (and its optimizer, `keep`), the background-only fine-tune, and per concept: the CAA vector
    of the first 8 pairs at the fine-tune, its fit probes and shift, and the held-out measure θ ↦ (f_s, margin)."""
    keep = {}
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
    return ft, keep, bg, fits, vectors, measures

def bergson_trackstar(ft, keep, tok, docs, fits) -> tuple:
    """Bergson 2.5.1's own `bergson trackstar` pipeline, run in-process on CPU as its CLI runs it, at the fine-tuned
    small LM: the model saved as a transformers GPT-2 (Conv1D: the same function), the corpus and the query texts as
    datasets on disk, the linear layers' weights and biases (`include_bias`), each text's mean next-token loss. The
    normaliser is the fine-tune's own Adam second moments; per-module random projection (k = 16 per side, Bergson's
    default), the documents' projected autocorrelation as H, H^-1/2 with unit normalisation on both sides, damping
    0.1 × its mean eigenvalue (Bergson's defaults); the query Hessian is not mixed in (16 query texts per concept).
    Queries: each concept's 8 fit pairs, one score column per text (Bergson's trackstar builds its query from a
    dataset's losses and ignores `query.contrast`), read as two rows: the contrast, mean over the positive texts
    minus mean over the negative ones, and the positive texts alone (a document loss). (scores, note)."""
    import tempfile
    from datasets import Dataset
    from transformers import GPT2LMHeadModel
    from transformers.pytorch_utils import Conv1D
    from bergson.config.config import DataConfig, QuerySetConfig, TrackstarIndexConfig, TrackstarConfig, PreprocessConfig
    from bergson.cli.trackstar import trackstar
    gpt = GPT2LMHeadModel(copy.deepcopy(ft.config)).eval()
    conv = {n for n, m in gpt.named_modules() if isinstance(m, Conv1D)}
    tr = lambda k, v: v.T if k.endswith('.weight') and k.rpartition('.')[0] in conv else v   # nn.Linear ↔ Conv1D storage
    gpt.load_state_dict({k: tr(k, v) for k, v in ft.state_dict().items()})
    with torch.no_grad():
        b = right_padded(tok, list(docs[:16]))
        if not torch.allclose(gpt(**b).logits, ft(**b).logits, atol=1e-5): raise RuntimeError("the Conv1D copy computes other logits")
    queries = [t for f in fits for t in list(f['pos']) + list(f['neg'])]
    opt = keep['opt']; param = dict(zip(keep['names'], opt.param_groups[0]['params']))
    lin = [n for n in keep['names'] if n != 'transformer.wte.weight']
    with tempfile.TemporaryDirectory() as d:
        gpt.save_pretrained(f'{d}/model'); tok.save_pretrained(f'{d}/model')
        Dataset.from_dict({'text': list(docs)}).save_to_disk(f'{d}/docs')
        Dataset.from_dict({'text': queries}).save_to_disk(f'{d}/queries')
        st = {i: dict(exp_avg_sq=tr(n, opt.state[param[n]]['exp_avg_sq'].detach().clone()), param_name=n) for i, n in enumerate(lin)}
        torch.save(dict(state=st, param_groups=[dict(params=list(st))]), f'{d}/optimizer.pt')
        icfg = TrackstarIndexConfig(run_path=f'{d}/run', model=f'{d}/model', data=DataConfig(dataset=f'{d}/docs'),
                                    include_bias=True, loss_reduction='mean', token_batch_size=ft.config.n_positions,
                                    precision='fp32', optimizer_state=f'{d}/optimizer.pt')
        with torch.random.fork_rng():
            torch.manual_seed(0)
            trackstar(icfg, TrackstarConfig(query=QuerySetConfig(dataset=f'{d}/queries', aggregation='none'),
                                            preprocess_cfg=PreprocessConfig(unit_normalize=True), mix_hessians=False,
                                            stats_sample_size=None))
        info = json.load(open(f'{d}/run/scores/info.json'))
        mm = np.memmap(f'{d}/run/scores/scores.bin', dtype=info['dtype'], mode='r', shape=(info['num_rows'],))
        S = np.stack([np.asarray(mm[f'score_{i}'], np.float64) for i in range(info['num_scores'])])
    if S.shape != (len(queries), len(docs)): raise RuntimeError(f"Bergson returned scores of shape {S.shape}")
    S = S.reshape(len(fits), 2, -1, len(docs))             # concept × (positive, negative) × pair × document
    note = (f"`bergson trackstar` (Bergson 2.5.1) at the fine-tune: its Adam second moments as the normaliser, per-module "
            f"projection k = {icfg.projection_dim} per side, the documents' autocorrelation as H, H^-1/2 and unit normalisation on "
            "both sides, damping 0.1 × mean eigenvalue, query Hessian not mixed; one column per query text, the contrast "
            "row = mean over the 8 positive texts − mean over the 8 negative ones, the positive row = the positive texts' mean")
    return {'bergson_trackstar_contrast': S[:, 0].mean(1) - S[:, 1].mean(1), 'bergson_trackstar_positive': S[:, 0].mean(1)}, note

def bergson_rows(a):
    """Bergson's TrackStar as rows beside the methods of an earlier small-LM run (`a.bergson`, its settings reused): the
    same θ₀, corpus and seeded fine-tunes are rebuilt (the fine-tune's f_s and margin are checked against the stored
    ones), each gated cell's Bergson top k is retrained without and tail-patched, shares are taken of the stored
    oracle's drops; written with the earlier rows of the same cells, so the summary pairs them by cell."""
    base = json.load(open(a.bergson))
    for k, v in base['settings'].items(): setattr(a, k, v)
    a.seeds = a.bergson_seeds
    t_start = time.perf_counter(); torch.manual_seed(0)
    model, tok, corpus, concepts, probes, names = setup(a)
    batch, base_w = right_padded(tok, corpus['text']), np.array(corpus['weight'], dtype=np.float32)
    concept, twin = np.array(corpus['concept']), np.array(corpus['twin'])
    cells = [copy.deepcopy(c) for c in base['cells'] if c['seed'] < a.seeds]
    notes, repro = {}, []
    for seed in range(a.seeds):
        ft, keep, bg, fits, vectors, measures = seed_models(model, tok, batch, base_w, corpus, concepts, probes, names, a, seed)
        t0 = time.perf_counter()
        scores, notes['bergson'] = bergson_trackstar(ft, keep, tok, corpus['text'], fits)
        notes[f'Bergson seconds, seed {seed}'] = round(time.perf_counter() - t0)
        for c, name in enumerate(tqdm(list(concepts), desc=f'seed {seed} cells')):
            cell = next(x for x in cells if x['seed'] == seed and x['concept'] == name)
            measure, f = measures[c], cell['f']
            again = measure(ft)
            repro.append(max(abs(again[i] - f['ft'][i]) / max(abs(f['ft'][i]), 1e-12) for i in range(2)))
            relevant = (concept == name) & ~twin
            for m, sc in scores.items():
                r = retrieval(sc[c], relevant, concept != '', twin, a.k)
                if cell['gate']:
                    idx = np.argsort(-sc[c], kind='stable')[:a.k]
                    w = base_w.copy(); w[idx] = 0
                    lo = measure(weighted_train(model, batch, w, names, a.lr, a.epochs, a.batch, seed=seed))
                    tp, tp0 = measure(tail_patch(ft, keep, batch, list(idx))), measure(tail_patch(ft, keep, batch, []))
                    r |= dict(f_drop=f['ft'][0] - lo[0], margin_drop=f['ft'][1] - lo[1], tail_patch=tp[0] - tp0[0],
                              tail_patch_margin=tp[1] - tp0[1], removed_trained=int(base_w[idx].sum()))
                    o = cell['metrics']['oracle']
                    for share, key, ok in (('f_share', 'f_drop', 'f_drop'), ('margin_share', 'margin_drop', 'margin_drop'),
                                           ('tail_patch_share', 'tail_patch', 'tail_patch'),
                                           ('tail_patch_margin_share', 'tail_patch_margin', 'tail_patch_margin')):
                        r[share] = r[key] / o[ok] if o[ok] > 0 else None
                cell['metrics'][m] = r
            print(f"seed {seed} {name}: " + '; '.join(f"{m}: margin share {cell['metrics'][m].get('margin_share')}" for m in scores), flush=True)
    methods = sorted({m for c in cells for m in c['metrics'] if not m.startswith('random') and m != 'oracle'})
    notes['reproduction'] = (f"the rebuilt fine-tunes' f_s and margin against the stored ones: largest relative difference "
                             f"{max(repro):.1e} over {len(repro)} cells")
    res = dict(command='OMP_NUM_THREADS=1 PYTHONPATH=. python ' + ' '.join(sys.argv), base=a.bergson, settings=base['settings'],
               seeds=a.seeds, run_seconds=time.perf_counter() - t_start, load_average=os.getloadavg()[0],
               notes=base.get('notes', {}) | notes, cells=cells, summary=summary(cells, methods, a))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    json.dump(res, open(a.out, 'w'), indent=1, default=float)
    print(notes['reproduction']); print(f"wrote {a.out} ({res['run_seconds']:.0f} s)")
    return res

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--model', choices=('small', 'smollm2'), default='small',
                    help="the LDS bench's small GPT-2 (the full grid) or SmolLM2-135M-Instruct (the confirmation)")
    ap.add_argument('--concepts', type=int, default=8); ap.add_argument('--seeds', type=int, default=2)
    ap.add_argument('--concept-names', type=lambda x: x.split(','), default=None, help='comma-separated concepts (SmolLM2)')
    ap.add_argument('--documents', type=int, default=24, help="SmolLM2: the first n texts of each concept's list "
                    "(planted and twin alternate: n/2 planted documents, n/2 twins, all eight forms)")
    ap.add_argument('--train-blocks', type=int, default=5, help='SmolLM2: train the linear layers of blocks 0 … n − 1')
    ap.add_argument('--background', type=int); ap.add_argument('--k', type=int)
    ap.add_argument('--random', type=int, default=5, help='random k-sets per cell')
    ap.add_argument('--epochs', type=int); ap.add_argument('--lr', type=float)
    ap.add_argument('--batch', type=int); ap.add_argument('--pretrain', type=int, default=300)
    ap.add_argument('--vocab', type=int, default=2000); ap.add_argument('--max-length', type=int)
    ap.add_argument('--layer'); ap.add_argument('--sketch', type=int, default=16)
    ap.add_argument('--k-param', type=int, default=16); ap.add_argument('--lambdas', type=float, nargs='+', default=[0.1, 0.01, 1.0])
    ap.add_argument('--cg-iters', type=int, default=20); ap.add_argument('--cg-docs', type=int, default=128)
    ap.add_argument('--workers', type=int)
    ap.add_argument('--tail-patch', type=int, choices=(0, 1), help='measure the tail-patch (default: on the small LM only)')
    ap.add_argument('--gate', choices=('f', 'margin'), help="the learned-ness gate's measure (default: f_s on the small LM, "
                    "the pairs' margin on SmolLM2, where f_s moves more under the background-only fine-tune)")
    ap.add_argument('--leave-out', type=lambda x: x.split(','), default=None,
                    help='SmolLM2: the methods retrained without their top k and tail-patched (the others: retrieval only)')
    ap.add_argument('--quick', action='store_true'); ap.add_argument('--out')
    ap.add_argument('--bergson', metavar='JSON', help="add Bergson 2.5.1's TrackStar rows to the cells of this small-LM run "
                    "(its settings reused; written to --out, default results/counterfactual_bergson.json)")
    ap.add_argument('--bergson-seeds', type=int, default=1, help='with --bergson: the seeds whose cells get the rows')
    a = ap.parse_args()
    if a.bergson:
        a.out = a.out or 'results/counterfactual_bergson.json'
        return bergson_rows(a)
    small = a.model == 'small'
    for k, (vs, vl) in dict(k=(32, 16), tail_patch=(1, 0), gate=('f', 'margin'), batch=(32, 8), background=(300, 16), epochs=(10, 1), lr=(3e-3, 3e-4), max_length=(32, 16),
                            layer=('transformer.h.0', 'model.layers.3'), workers=(min(2, os.cpu_count()), 1),
                            out=('results/counterfactual.json', 'results/counterfactual_smollm2.json')).items():
        if getattr(a, k) is None: setattr(a, k, vs if small else vl)
    if a.quick: a.concepts, a.seeds, a.random, a.background, a.cg_iters = 2, 1, 2, 100, 3
    if not small:
        a.concepts = len(a.concept_names) if a.concept_names else a.concepts
        a.leave_out = a.leave_out or ['contrast_ekfac', 'contrast', 'cosine', 'projection_difference']
        for k in ('pretrain', 'vocab', 'sketch', 'k_param', 'lambdas', 'cg_iters', 'cg_docs'): setattr(a, k, None)  # not used
    t_start = time.perf_counter(); torch.manual_seed(0)
    settings = {k: v for k, v in vars(a).items() if k not in ('workers', 'out')
                and not (small and k in ('model', 'concept_names', 'documents', 'train_blocks', 'leave_out', 'gate', 'tail_patch',
                                         'bergson', 'bergson_seeds'))}   # the small LM's settings as before
    old = json.load(open(a.out)) if Path(a.out).exists() else None
    same = lambda x: {k: v for k, v in x.items() if k != 'seeds'}       # cells are per seed: more or fewer seeds reuse them
    cells = [c for c in old['cells'] if c['seed'] < a.seeds] if old and same(old['settings']) == same(settings) else []
    cells_reused = bool(cells)
    spent = old['run_seconds'] if cells else 0.0
    notes = old.get('notes', {}) if cells else {}
    model, tok, corpus, concepts, probes, names = (setup if small else setup_smollm2)(a)
    batch, base_w = right_padded(tok, corpus['text']), np.array(corpus['weight'], dtype=np.float32)
    cache = None if small else MeasureCache(Path(a.out).with_suffix('.cache.json'), settings)
    print(f"θ₀: {'GPT-2 2×64' if small else 'SmolLM2-135M-Instruct'} over {len(tok)} tokens; corpus {len(base_w)} documents ({int(base_w.sum())} trained, "
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
        t0 = time.perf_counter()
        ft, keep, bg, fits, vectors, measures = seed_models(model, tok, batch, base_w, corpus, concepts, probes, names, a, seed)
        print(f'seed {seed}: fine-tunes {time.perf_counter() - t0:.0f} s', flush=True)
        t1 = time.perf_counter()
        if small: scores, notes[f'seed {seed}'] = scores_of_seed(ft, tok, corpus, vectors, fits, names, keep, a)
        else:                                              # the seed's scores cached: a resumed run skips the scoring
            got = cache.get(seed, 'scores', [], lambda: (lambda sn: [{m: x.tolist() for m, x in sn[0].items()}, sn[1]])(
                scores_smollm2(ft, tok, corpus, vectors, fits, names, keep, a)))
            scores, notes[f'seed {seed}'] = {m: np.array(x) for m, x in got[0].items()}, got[1]
        notes[f'seed {seed}']['fine-tunes and scores, seconds'] = [round(t1 - t0), round(time.perf_counter() - t1)]
        print(f'seed {seed}: scores {time.perf_counter() - t1:.0f} s; {notes[f"seed {seed}"].get("cg", notes[f"seed {seed}"]["damping"])}', flush=True)
        methods = sorted(scores)
        fs = {}
        if not small:        # SmolLM2: every cell's gate and retrieval first, in the JSON before any retraining
            concept, twin = np.array(corpus['concept']), np.array(corpus['twin'])
            fs = {name: dict(base=measures[c](model), ft=measures[c](ft), bg=measures[c](bg)) for c, name in enumerate(concepts)}
            notes[f'seed {seed}']['before retraining'] = {name: dict(
                f=f, gates={g: learned(f['base'][i], f['ft'][i], f['bg'][i]) for i, g in enumerate(('f', 'margin'))},
                retrieval={m: retrieval(s[c], (concept == name) & ~twin, concept != '', twin, a.k) for m, s in scores.items()})
                for c, (name, f) in enumerate(fs.items())}
            save(methods)
            del bg                                          # memory: the retrainings need room
        for c, name in enumerate(tqdm(list(concepts), desc=f'seed {seed} cells')):
            if any(x['seed'] == seed and x['concept'] == name for x in cells): continue
            t2 = time.perf_counter()
            measure = measures[c]
            f = fs[name] if name in fs else dict(base=measure(model), ft=measure(ft), bg=measure(bg))
            gates = {g: learned(f['base'][i], f['ft'][i], f['bg'][i]) for i, g in enumerate(('f', 'margin'))}
            gate = gates[a.gate]
            cell = dict(seed=seed, concept=name, gate=gate, f=f) | ({} if small else dict(gates=gates))
            if gate and small:
                rng = np.random.default_rng(1000 * seed + c)
                retrain = lambda ws: retrain_all(model, batch, names, a, seed, ws, measure)
                tp = lambda rows: measure(tail_patch(ft, keep, batch, rows))
            elif gate:                                     # SmolLM2: random sets shared by the seed's cells, all cached
                rng = np.random.default_rng(1000 * seed)
                every = lambda m: [list(ms(m)) for ms in measures]
                def retrain(ws, c=c):
                    out = []
                    for w in ws:
                        key = np.flatnonzero((w == 0) & (base_w != 0))   # the trained documents left out
                        out.append(cache.get(seed, 'leave-out', key, lambda: every(weighted_train(
                            model, batch, w, names, a.lr, a.epochs, a.batch, seed=seed)))[c])
                    return out
                tp = (lambda rows, c=c: cache.get(seed, 'tail-patch', sorted(rows),
                                                  lambda: every(tail_patch(ft, keep, batch, list(rows))))[c]) \
                     if a.tail_patch else (lambda rows: (float('nan'), float('nan')))
            if gate:
                retrained = scores if small else {m: s for m, s in scores.items() if m in a.leave_out}
                cell['metrics'] = cell_metrics(c, name, retrained, corpus, base_w, f, a, retrain, tp, rng)
                concept = np.array(corpus['concept']); twin = np.array(corpus['twin'])
                cell['metrics'] |= {m: retrieval(s[c], (concept == name) & ~twin, concept != '', twin, a.k)
                                    for m, s in scores.items() if m not in retrained}
            else:
                concept = np.array(corpus['concept']); twin = np.array(corpus['twin'])
                cell['metrics'] = {m: retrieval(s[c], (concept == name) & ~twin, concept != '', twin, a.k) for m, s in scores.items()}
            cell['seconds'] = time.perf_counter() - t2
            cells.append(cell); save(methods)
            print(f"seed {seed} {name}: gate {gate} (f: θ₀ {f['base'][0]:.2f}, fine-tune {f['ft'][0]:.2f}, background-only "
                  f"{f['bg'][0]:.2f}; margin: {f['base'][1]:.3f}, {f['ft'][1]:.3f}, {f['bg'][1]:.3f}); {cell['seconds']:.0f} s", flush=True)
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
