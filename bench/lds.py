"""Linear datamodeling score (LDS) of corpus-scale influence on a small language model, by the field's protocol
(DESIGN §12 (2); TRAK, kronfluence's and dattri's benchmarks): ours beside peers on one ground truth.

    OMP_NUM_THREADS=1 PYTHONPATH=. python bench/lds.py                 # the full run (N = 500, M = 100 subsets × 2 seeds, 10 epochs): 22 min on 2 cores
    OMP_NUM_THREADS=1 PYTHONPATH=. python bench/lds.py --quick         # a few-minute smoke run (small sizes)
    OMP_NUM_THREADS=1 PYTHONPATH=. python bench/lds.py --methods 'dattri 0.3 TRAK' --reuse   # add rows to an earlier run
    ... --scores DIR   # each method's scores saved in DIR and read back: resume, or score beside the training (--m 6)
    ... --reuse --methods 'Bergson 2.5.1 TrackStar;Bergson 2.5.1 EK-FAC;Bergson 2.5.1 TRAK'   # Bergson's own pipelines

Model: a small GPT-2 (2 blocks, width 64) over a word-level vocabulary, pretrained here on the part of Python's
help text that is NOT in the corpus (the common start θ₀; its Conv1D layers as the equal nn.Linear). Corpus: N
paragraphs of Python's help text (`python_doc_paragraphs`). Training: what users run — Adam on minibatches, 10
epochs (held-out loss plateaus between 10 and 20), the 16 linear layers' weights and biases (embeddings, norms
frozen, the same parameters every method scores), from θ₀, on each of M random 50% subsets, with 2 seeds
(minibatch order) per subset: the truth is their mean. Their agreement r (the seed agreement) is not a ceiling: a
perfect predictor of the noise-free change reaches sqrt(2r / (1 + r)) against the 2-seed mean, reported beside it. Queries, each
its own measurement: the loss of Q held-out paragraphs and the functionals f_s(θ) = Σ_x ⟨centred t_x, y_θ(x)⟩
of 8 steers (2 random unit vectors and 2 CAA vectors at each of the two blocks' outputs; t_x = J_h(x)s at θ₀ on 8 probe
prompts; centred over the vocabulary, since a constant logit shift changes no probability). LDS = Spearman over
subsets per query of −Σ_{z∈S} score_q(z) and the measured change, averaged over queries, 95% bootstrap interval
over queries (`ias_nb.corpus.lds`). Damping λ = 0.1 × the mean EK-FAC eigenvalue, the same for every method that
takes one.

Steer-only rows: the CAA steers' behaviour contrast (EK-FAC) and the two activation baselines (hidden-state cosine,
projection difference; their similarity summed over the subset as the prediction).

Methods: a dict name → scoring function (`METHODS`; each returns a Q×N array score_q(z) = ⟨q̃, ∇ℓ(z)⟩), so a new
method (e.g. an index) is one entry. A method that fails shows its error in the table.
"""
import argparse, copy, json, os, sys, time, traceback
from pathlib import Path
import numpy as np, torch
sys.path.insert(0, str(Path(__file__).parent))
from ias_nb.corpus import (linear_modules, document_scores, readout_query, steer_shift, centred,
                           identity_preconditioner, cg_preconditioner, ekfac_factors, EKFACPreconditioner,
                           right_padded, trim_padding, RowsDataset, random_subsets,
                           subset_predictions, lds, seed_ceiling, datamodel_ceiling, contrast_gradient,
                           hidden_cosines, projection_difference, mean_eigenvalue_damping)
from ias_nb.validation import mean_of_seeds_bound, word_tokenizer, pretrained_start, help_text_split, weighted_train
from ias_nb.alignment import text_losses
from ias_nb.steering import lm_batch, caa_vector
from ias_nb.jacobians import last_token_logits

# ---------------------------------------------------------------- model, corpus, queries
def texts(n_docs:int, n_queries:int):
    "(pretraining text, corpus, held-out queries, probes, CAA groups): disjoint paragraphs of Python's help text."
    pre, docs, queries, rest, other = help_text_split(n_docs, n_queries)
    return pre, docs, queries, [' '.join(p.split()[:6]) for p in rest[:8]], other

def train_on(model0, batches:dict, names:list, lr:float, epochs:int, batch_size:int, seed:int, keep:dict=None):
    """θ_S: Adam on the mean document loss of the given rows, `epochs` passes in a seeded random order, `names` only
    (chapter 11d's `weighted_train` with every weight 1; `keep`, a dict, receives the optimizer and the names)."""
    return weighted_train(model0, batches, np.ones(len(batches['input_ids'])), names, lr, epochs, batch_size, seed, keep)

def _train_subset(i:int) -> np.ndarray:
    "Measurements after training on subset i, one row per seed (a worker's task; its inputs are `_TRAIN`)."
    model, bd, mask, names, a, ctx = _TRAIN
    rows = {k: v[torch.from_numpy(mask[i])] for k, v in bd.items()}
    return np.stack([measurements(train_on(model, rows, names, a.lr, a.epochs, a.batch, seed=sd), ctx)
                     for sd in range(a.seeds)])

def subset_truth(model, bd:dict, mask:np.ndarray, names:list, a, ctx) -> np.ndarray:
    """Seeds × M × Q measurements after training on each subset: `a.workers` forked one-thread processes share the
    subsets (each training is the same computation as in one process, so the figures do not depend on the count)."""
    import multiprocessing as mp
    from tqdm.auto import tqdm
    global _TRAIN
    _TRAIN = (model, bd, mask, names, a, ctx)
    with mp.get_context('fork').Pool(a.workers) if a.workers > 1 else _Serial() as pool:
        out = list(tqdm(pool.imap(_train_subset, range(a.m)), total=a.m, desc='training on subsets', mininterval=30))
    return np.stack(out, 1)

class _Serial:
    "A one-process stand-in for a Pool (`imap` is `map`)."
    def __enter__(self): return self
    def __exit__(self, *exc): pass
    imap = staticmethod(map)

def measurements(m, ctx) -> np.ndarray:
    "Every query's value at the model m: Q held-out paragraphs' losses, then the steers' functionals f_s."
    with torch.no_grad():
        losses = text_losses(m, ctx['qbatch']).double()
        y = last_token_logits(m(**ctx['pbatch'])).double()
        f = torch.einsum('spv,pv->s', ctx['T'], y)
    return torch.cat([losses, f]).numpy()

# ---------------------------------------------------------------- each query as a gradient
def query_gradients(ctx) -> list:
    "∇θ of every query (Q paragraph losses, then the steers' f_s) over the trained parameters: a list of dicts."
    model, names = ctx['model'], ctx['names']
    sel = {n: p for n, p in model.named_parameters() if n in names}
    out = []
    for i in range(len(ctx['queries'])):
        with torch.enable_grad():
            for p in sel.values(): p.requires_grad_(True)
            row = trim_padding([{k: v[i] for k, v in ctx['qbatch'].items()}])
            g = torch.autograd.grad(text_losses(model, row).sum(), list(sel.values()))
        out.append({n: x.detach() for n, x in zip(sel, g)})
    out += [readout_query(model, ctx['tok'], ctx['probes'], T.float(), params=names) for T in ctx['T']]
    return out

def ours(ctx, pre, docs=None) -> np.ndarray:
    "Our scores of every query, preconditioned by `pre`, over the documents (or an index of them)."
    return document_scores(ctx['model'], ctx['tok'], ctx['docs'] if docs is None else docs,
                           [pre(q) for q in ctx['qgrads']], batch_size=16, progress=False).numpy()

def ours_cg(ctx) -> np.ndarray:
    P = cg_preconditioner(ctx['model'], ctx['tok'], ctx['docs'][:ctx['args'].cg_docs], ctx['damping'],
                          params=ctx['names'], maxiter=ctx['args'].cg_iters, tol=1e-6, batch_size=16, progress=False)
    pre = [P(q) for q in ctx['qgrads']]
    res = [r.residuals[-1] for r in P.records]
    ctx['notes']['ours, CG'] = (f"GGN of the first {ctx['args'].cg_docs} documents, ≤ {ctx['args'].cg_iters} iterations; "
                                f"{sum(r.converged for r in P.records)} of {len(res)} solves converged, relative residual "
                                f"‖r‖/‖g‖ median {np.median(res):.2f} (range {min(res):.2f}–{max(res):.2f}): a truncated Krylov "
                                "solve, not (G + λI)⁻¹g")
    return document_scores(ctx['model'], ctx['tok'], ctx['docs'], pre, batch_size=16, progress=False).numpy()

def ekfac(ctx) -> dict:
    if 'ekfac' not in ctx:
        ctx['ekfac'] = ekfac_factors(ctx['model'], ctx['tok'], ctx['docs'], ctx['mods'], batch_size=16)
    return ctx['ekfac']

def kronfluence_pairwise(ctx) -> np.ndarray:
    "kronfluence's own EK-FAC pairwise scores: one factor fit, loss queries as rows, steers as probe rows summed."
    from kronfluence.arguments import FactorArguments, ScoreArguments
    from _kronfluence_peer import DocumentTask, _analyzer
    import tempfile
    f64 = dict(activation_covariance_dtype=torch.float64, gradient_covariance_dtype=torch.float64,
               eigendecomposition_dtype=torch.float64, lambda_dtype=torch.float64)
    sargs = ScoreArguments(damping_factor=ctx['damping'], precondition_dtype=torch.float64, score_dtype=torch.float64,
                           per_sample_gradient_dtype=torch.float64)
    train = RowsDataset(right_padded(ctx['tok'], ctx['docs']))
    rows = []
    with tempfile.TemporaryDirectory() as out:
        for kind in ('loss', 'steer'):
            an = _analyzer(ctx['model'], DocumentTask(ctx['mods'], kind), out)
            an.fit_all_factors(factors_name='ekfac', dataset=train, per_device_batch_size=16,
                               factor_args=FactorArguments(strategy="ekfac", **f64), overwrite_output_dir=True)
            if kind == 'loss': q = RowsDataset(ctx['qbatch'])
            else:
                pb = right_padded(ctx['tok'], ctx['probes']); P = len(ctx['probes'])
                q = [dict(input_ids=pb['input_ids'][i], attention_mask=pb['attention_mask'][i], t=T[i].float())
                     for T in ctx['T'] for i in range(P)]
            an.compute_pairwise_scores(scores_name=kind, factors_name='ekfac', query_dataset=q, train_dataset=train,
                                       per_device_query_batch_size=len(q), per_device_train_batch_size=16,
                                       score_args=sargs, overwrite_output_dir=True)
            s = an.load_pairwise_scores(kind)['all_modules'].double().numpy()
            rows.append(s if kind == 'loss' else s.reshape(len(ctx['T']), P, -1).sum(1))
    return np.concatenate(rows)

def dattri_scores(ctx, kind:str) -> np.ndarray:
    "dattri 0.3's attributors on the same model, parameters, documents and queries: Q×N."
    import torch.nn.functional as F
    from dattri.task import AttributionTask
    from dattri.algorithm import IFAttributorCG, TRAKAttributor, TracInAttributor
    from torch.utils.data import DataLoader, TensorDataset
    from torch.func import functional_call
    model, names = copy.deepcopy(ctx['model']), ctx['names']
    model.config._attn_implementation = 'eager'        # torch's fused CPU attention has no double backward (IF-CG's HVPs)
    bd, bq = right_padded(ctx['tok'], ctx['docs']), ctx['qbatch']
    bp = right_padded(ctx['tok'], ctx['probes'])
    V, S, P = ctx['T'].shape[2], len(ctx['T']), len(ctx['probes'])
    def loss_func(params, data):                              # a document's mean next-token loss (a batch: their mean)
        ids, am = data[0], data[1]
        if ids.dim() == 1: ids, am = ids[None], am[None]
        logits = functional_call(model, params, (ids,)).logits[:, :-1]   # right padding: no mask needed
        tl = F.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction='none')
        w = (am[:, :-1] * am[:, 1:]).to(tl.dtype)
        return ((tl * w).sum(1) / w.sum(1)).mean()
    def target_func(params, data):                            # query rows: a paragraph's loss or ⟨t_x, y(x)⟩, summed
        ids, am, tt, is_loss = data
        if ids.dim() == 1: ids, am, tt, is_loss = ids[None], am[None], tt[None], is_loss[None]
        logits = functional_call(model, params, (ids,)).logits
        last_w = am * torch.cat([1 - am[:, 1:], am.new_ones(len(am), 1)], 1)     # 1 at the last real token
        last = (last_w[..., None].to(logits.dtype) * logits).sum(1)
        tl = F.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:], reduction='none')
        w = (am[:, :-1] * am[:, 1:]).to(tl.dtype)
        return (is_loss * (tl * w).sum(1) / w.sum(1) + (1 - is_loss) * (last * tt).sum(1)).sum()
    task = AttributionTask(loss_func=loss_func, target_func=target_func, model=model,
                           checkpoints=model.state_dict())
    pad = lambda b, T: F.pad(b, (0, T - b.shape[1]))
    T = max(bq['input_ids'].shape[1], bp['input_ids'].shape[1])
    nq = len(ctx['queries'])
    ti = torch.cat([pad(bq['input_ids'], T)] + [pad(bp['input_ids'], T)] * S)
    ta = torch.cat([pad(bq['attention_mask'], T)] + [pad(bp['attention_mask'], T)] * S)
    tt = torch.cat([torch.zeros(nq, V), ctx['T'].float().reshape(S * P, V)])
    test = TensorDataset(ti, ta, tt, torch.cat([torch.ones(nq), torch.zeros(S * P)]))
    train = TensorDataset(bd['input_ids'], bd['attention_mask'], torch.zeros(len(bd['input_ids']), V),
                          torch.zeros(len(bd['input_ids'])))
    dl = lambda d, b: DataLoader(d, batch_size=b)
    if kind == 'IF-CG':   # dattri solves per (train batch, test batch) on the cached loader's batches: one batch each
        k = ctx['args'].cg_docs
        att = IFAttributorCG(task=task, layer_name=names, max_iter=ctx['args'].cg_iters, regularization=ctx['damping'])
        att.cache(dl(torch.utils.data.Subset(train, range(k)), k))
        s = att.attribute(dl(train, len(train)), dl(test, 4))   # 4 rows per vmapped CG: 16 took 8 GB
        ctx['notes']['dattri 0.3 IF-CG'] = (f"Hessian of the first {k} documents' loss (as ours, CG), {ctx['args'].cg_iters} "
                                            "CG iterations (dattri's CG has no tolerance test and reports no residual)")
    elif kind == 'TRAK':
        def correct_probability_func(params, data):            # TRAK's Q term for a document: exp(−ℓ(z))
            return torch.exp(-loss_func(params, data))
        att = TRAKAttributor(task=task, correct_probability_func=correct_probability_func, layer_name=names,
                             projector_kwargs=dict(proj_dim=ctx['args'].trak_dim, device='cpu'),
                             regularization=ctx['damping'])
        att.cache(dl(train, 16)); s = att.attribute(dl(test, 16))
    else:
        att = TracInAttributor(task=task, weight_list=torch.ones(1), normalized_grad=False, layer_name=names)
        s = att.attribute(dl(train, 100), dl(test, 64))        # larger batches: dattri recomputes test gradients per train batch
    s = s.detach().double().numpy()                            # N × rows
    return np.concatenate([s[:, :nq].T, s[:, nq:].T.reshape(S, P, -1).sum(1)])

def bergson_scores(ctx) -> np.ndarray:
    """Bergson 2.5.1's in-memory gradient collector (CPU): per-document gradients of the mean next-token loss of
    the linear layers' weights, unprojected, no preconditioner; score = their inner product with each query
    paragraph's. Its collector differentiates a document's loss, so a steer's f_s is not expressible: NaN rows."""
    import tempfile
    from datasets import Dataset
    from bergson import InMemoryCollector, IndexConfig, GradientProcessor
    from bergson.collector.collector import CollectorComputer
    def grads(texts):
        ids = [ctx['tok'](t)['input_ids'] for t in texts]
        with tempfile.TemporaryDirectory() as d:
            os.makedirs(f'{d}/run.part'); cfg = IndexConfig(run_path=f'{d}/run', projection_dim=0, loss_reduction='mean')
            ds = Dataset.from_dict({'input_ids': ids})
            col = InMemoryCollector(model=ctx['model'].base_model, cfg=cfg, processor=GradientProcessor(), data=ds)
            batches = [list(range(i, min(i + 16, len(ids)))) for i in range(0, len(ids), 16)]
            CollectorComputer(model=ctx['model'], data=ds, collector=col, batches=batches, cfg=cfg).run_with_collector_hooks(desc='bergson')
            return torch.cat([col.gradients[k].double().flatten(1) for k in sorted(col.gradients)], 1)
    G, Gq = grads(ctx['docs']), grads(ctx['queries'])
    ctx['notes']['Bergson 2.5.1 Grad-Dot'] = (f"Grad-Dot through Bergson's collector: {G.shape[1]:,} weight entries (no biases), "
                                     "loss queries only (a steer's functional is not a document loss)")
    return np.concatenate([(Gq @ G.T).numpy(), np.full((len(ctx['T']), len(ctx['docs'])), np.nan)])

def bergson_pipeline(ctx, kind:str) -> np.ndarray:
    """Bergson 2.5.1's own end-to-end pipelines, run in-process on CPU as its CLI runs them (`bergson trackstar`,
    `bergson ekfac`, `bergson trak`): θ₀ saved as a transformers GPT-2 (its Conv1D layers: the same function and the
    same scores), the tokenizer beside it, documents and query paragraphs as datasets on disk; the 8 linear layers'
    weights and biases (`include_bias`), each document's mean next-token loss (`loss_reduction='mean'`).
    TrackStar: the second moments of Adam training on all N documents (the run the bench retrains on halves) as the
    optimizer normalizer, per-module random projection (Bergson's default k = 16 per side), the projected gradients'
    autocorrelation as H, H^-1/2 on both sides with unit normalisation, damping 0.1 × its mean eigenvalue (Bergson's
    default); the query set's Hessian is not mixed in (50 paragraphs, i.i.d. with the documents). EK-FAC: KFAC factors
    with eigenvalue correction (labels sampled from the model, Bergson's default), unprojected, inverted with the bench's
    absolute λ. TRAK: log-odds gradients projected globally to `--trak-dim` dimensions, their Gram (damping 0.1 × its
    mean eigenvalue), the (1 − p) weights. Loss queries only (a steer's functional is not a document loss): NaN rows.
    Run under torch's RNG seeded 0 (EK-FAC samples labels), then restored: a row does not depend on the methods before it."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return _bergson_pipeline(ctx, kind)

def _bergson_pipeline(ctx, kind:str) -> np.ndarray:
    import tempfile
    from datasets import Dataset
    from transformers import GPT2LMHeadModel
    from transformers.pytorch_utils import Conv1D
    from bergson.config.config import (DataConfig, QuerySetConfig, IndexConfig, TrackstarIndexConfig, TrackstarConfig,
                                       TrakConfig, HessianConfig, HessianPipelineConfig, ScoreConfig, PreprocessConfig,
                                       InversionConfig)
    gpt = GPT2LMHeadModel(copy.deepcopy(ctx['model'].config)).eval()
    conv = {n for n, m in gpt.named_modules() if isinstance(m, Conv1D)}
    tr = lambda k, v: v.T if k.endswith('.weight') and k.rpartition('.')[0] in conv else v   # nn.Linear ↔ Conv1D storage
    gpt.load_state_dict({k: tr(k, v) for k, v in ctx['model'].state_dict().items()})
    with torch.no_grad():
        b = ctx['qbatch']; same = torch.allclose(gpt(**b).logits, ctx['model'](**b).logits, atol=1e-5)
    assert same, "the Conv1D copy of θ₀ computes other logits"
    with tempfile.TemporaryDirectory() as d:
        gpt.save_pretrained(f'{d}/model'); ctx['tok'].save_pretrained(f'{d}/model')
        for name, t in (('docs', ctx['docs']), ('queries', ctx['queries'])):
            Dataset.from_dict({'text': list(t)}).save_to_disk(f'{d}/{name}')
        common = dict(run_path=f'{d}/run', model=f'{d}/model', data=DataConfig(dataset=f'{d}/docs'), include_bias=True,
                      loss_reduction='mean', token_batch_size=ctx['model'].config.n_positions, precision='fp32')
        query = QuerySetConfig(dataset=f'{d}/queries', aggregation='none')
        if kind == 'TrackStar':
            from bergson.cli.trackstar import trackstar
            a = ctx['args']; keep = {}
            train_on(ctx['model'], right_padded(ctx['tok'], ctx['docs']), ctx['names'], a.lr, a.epochs, a.batch, seed=0, keep=keep)
            pname = dict(zip(keep['names'], keep['opt'].param_groups[0]['params']))
            st = {i: dict(exp_avg_sq=tr(n, keep['opt'].state[pname[n]]['exp_avg_sq'].detach().clone()), param_name=n)
                  for i, n in enumerate(keep['names'])}
            torch.save(dict(state=st, param_groups=[dict(params=list(st))]), f'{d}/optimizer.pt')
            icfg = TrackstarIndexConfig(**common, optimizer_state=f'{d}/optimizer.pt')
            trackstar(icfg, TrackstarConfig(query=query, preprocess_cfg=PreprocessConfig(unit_normalize=True),
                                           mix_hessians=False, stats_sample_size=None))
            note = (f"`bergson trackstar`: Adam second moments of training on all N as the normaliser, per-module "
                    f"projection k = {icfg.projection_dim} per side, the projected gradients' autocorrelation as H, "
                    "H^-1/2 on both sides and unit normalisation, damping 0.1 × its mean eigenvalue; query Hessian not mixed")
        elif kind == 'EK-FAC':
            from bergson.hessians.pipeline import hessian_pipeline
            inv = InversionConfig(inversion='absolute_damped_inverse', damping_factor=ctx['damping'])
            hessian_pipeline(IndexConfig(**common), HessianConfig(method='kfac', ev_correction=True), ScoreConfig(),
                             PreprocessConfig(ev_correction=True, inversion_cfg=inv),
                             HessianPipelineConfig(query=query, inversion_cfg=inv))
            note = ("`bergson ekfac`: KFAC factors with eigenvalue correction (labels sampled from the model), "
                    "unprojected, (H + λI)⁻¹ with the bench's λ")
        else:
            from bergson.cli.trak import trak
            inv = InversionConfig(damping_factor=0.1)
            icfg = TrackstarIndexConfig(**common | dict(loss_fn='log_odds', projection_target='global',
                                                        projection_dim=ctx['args'].trak_dim))
            trak(icfg, TrakConfig(query=query, preprocess_cfg=PreprocessConfig(inversion_cfg=inv)))
            note = (f"`bergson trak`: log-odds gradients (documents and queries) projected to {icfg.projection_dim} "
                    "dimensions, inverse Gram with damping 0.1 × its mean eigenvalue, (1 − p) weights")
        ctx['notes'][f'Bergson 2.5.1 {kind}'] = note + "; loss queries only (a steer's functional is not a document loss)"
        info = json.load(open(f'{d}/run/scores/info.json'))
        mm = np.memmap(f'{d}/run/scores/scores.bin', dtype=info['dtype'], mode='r', shape=(info['num_rows'],))
        S = np.stack([np.asarray(mm[f'score_{i}'], np.float64) for i in range(info['num_scores'])])
    assert S.shape == (len(ctx['queries']), len(ctx['docs'])), S.shape
    return np.concatenate([S, np.full((len(ctx['T']), len(ctx['docs'])), np.nan)])

def ours_index(ctx, pre, label:str, dims:int=16) -> np.ndarray:
    """Our scores through a gradient index (chapter 12): rows (P_out δ)(P_in a)ᵀ with k = `dims` per side, float16;
    its note under the row's name, `ours, index k={dims}, {label}`."""
    import tempfile
    from ias_nb.index import build_index
    with tempfile.TemporaryDirectory() as d:
        ix = build_index(ctx['model'], ctx['tok'], ctx['docs'], d, dims=dims, layers=ctx['mods'], progress=False)
        ctx['notes'][f'ours, index k={dims}, {label}'] = (f"{ix.width:,} float16 values per document "
                                                 f"({2 * ix.width:,} B) for {len(ctx['mods'])} layers")
        return ours(ctx, pre, ix)

def steer_only(ctx, per_steer) -> np.ndarray:
    "Q×N scores, NaN on the loss queries and on the steers for which `per_steer(layer, label, vector, pairs)` is None."
    nq = len(ctx['queries']); out = np.full((nq + len(ctx['steers']), len(ctx['docs'])), np.nan)
    for j, st in enumerate(ctx['steers']):
        s = per_steer(*st)
        if s is not None: out[nq + j] = s
    return out

def contrast_scores(ctx, pre) -> np.ndarray:
    "The CAA steers' behaviour contrast: ⟨P∇[ℓ̄(neg) − ℓ̄(pos)], ∇ℓ(z)⟩ of their own pairs (random steers have none)."
    def one(layer, label, v, pairs):
        if pairs is None: return None
        q = pre(contrast_gradient(ctx['model'], ctx['tok'], pairs[0], pairs[1], ctx['names']))
        return document_scores(ctx['model'], ctx['tok'], ctx['docs'], q, batch_size=16, progress=False).numpy()
    ctx['notes']['ours, contrast, EK-FAC'] = (f"the {sum(p is not None for *_, p in ctx['steers'])} CAA steers, each with its own "
                                              "contrast texts (the random steers have none)")
    return steer_only(ctx, one)

def activation_baseline(ctx, f) -> np.ndarray:
    "An activation baseline's similarity of each document to each steer, as a score (−similarity: LDS sums −score)."
    ctx['notes'][{'hidden_cosines': 'hidden-state cosine'}.get(f.__name__, 'projection difference')] = (
        "an activation baseline: the steer's predicted change on a subset is the sum of its documents' similarity to the vector")
    return steer_only(ctx, lambda layer, label, v, pairs: -f(ctx['model'], ctx['tok'], layer, ctx['docs'], v).numpy())

METHODS = {
    'random score (floor)': lambda ctx: np.random.default_rng(1).normal(size=(len(ctx['qgrads']), len(ctx['docs']))),
    'ours, identity': lambda ctx: ours(ctx, identity_preconditioner(ctx['damping'])),
    'ours, CG': ours_cg,
    'ours, EK-FAC': lambda ctx: ours(ctx, EKFACPreconditioner(ctx['model'], ekfac(ctx), ctx['damping'])),
    'kronfluence 1.0.1 EK-FAC': kronfluence_pairwise,
    'dattri 0.3 Grad-Dot': lambda ctx: dattri_scores(ctx, 'Grad-Dot'),
    'dattri 0.3 IF-CG': lambda ctx: dattri_scores(ctx, 'IF-CG'),
    'dattri 0.3 TRAK': lambda ctx: dattri_scores(ctx, 'TRAK'),
    'Bergson 2.5.1 Grad-Dot': bergson_scores,
    'Bergson 2.5.1 TrackStar': lambda ctx: bergson_pipeline(ctx, 'TrackStar'),
    'Bergson 2.5.1 EK-FAC': lambda ctx: bergson_pipeline(ctx, 'EK-FAC'),
    'Bergson 2.5.1 TRAK': lambda ctx: bergson_pipeline(ctx, 'TRAK'),
    'ours, index k=16, identity': lambda ctx: ours_index(ctx, identity_preconditioner(ctx['damping']), 'identity'),
    'ours, contrast, EK-FAC': lambda ctx: contrast_scores(ctx, EKFACPreconditioner(ctx['model'], ekfac(ctx), ctx['damping'])),
    'hidden-state cosine': lambda ctx: activation_baseline(ctx, hidden_cosines),
    'projection difference': lambda ctx: activation_baseline(ctx, projection_difference),
    'ours, index k=16, EK-FAC': lambda ctx: ours_index(ctx, EKFACPreconditioner(ctx['model'], ekfac(ctx), ctx['damping']), 'EK-FAC'),
}

# ---------------------------------------------------------------- the run
def cached_scores(a, name:str, ctx, cmd:str):
    "(scores, None) computed now, or (scores, seconds they took) read back from `a.scores`; saved there when computed."
    if not a.scores: return np.asarray(METHODS[name](ctx), np.float64), None
    f = Path(a.scores) / (''.join(c if c.isalnum() else '_' for c in name) + '.npz')
    key = json.dumps(dict(n=a.n, queries=a.queries, vocab=a.vocab, max_length=a.max_length, pretrain=a.pretrain,
                          cg_iters=a.cg_iters, cg_docs=a.cg_docs, trak_dim=a.trak_dim, threads=torch.get_num_threads()))
    if f.exists():
        z = np.load(f)
        if str(z['key']) != key:
            raise SystemExit(f"{f} holds scores for other settings ({z['key']}, this run {key}): delete it or match them")
        if str(z['note']): ctx['notes'][name] = str(z['note'])
        ctx['score_commands'] = ctx.get('score_commands', []) + [str(z['command'])] * (str(z['command']) not in ctx.get('score_commands', []))
        return z['scores'], float(z['seconds'])
    t = time.perf_counter(); sc = np.asarray(METHODS[name](ctx), np.float64); t = time.perf_counter() - t
    f.parent.mkdir(parents=True, exist_ok=True)
    np.savez(f, scores=sc, seconds=t, key=key, command=cmd, note=ctx['notes'].get(name, ''))
    return sc, None

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--n', type=int, default=500); ap.add_argument('--m', type=int, default=100)
    ap.add_argument('--queries', type=int, default=50); ap.add_argument('--seeds', type=int, default=2)
    ap.add_argument('--epochs', type=int, default=10); ap.add_argument('--lr', type=float, default=3e-3)
    ap.add_argument('--batch', type=int, default=32); ap.add_argument('--pretrain', type=int, default=300)
    ap.add_argument('--vocab', type=int, default=2000); ap.add_argument('--max-length', type=int, default=32)
    ap.add_argument('--cg-iters', type=int, default=20); ap.add_argument('--cg-docs', type=int, default=16)
    ap.add_argument('--trak-dim', type=int, default=512)
    ap.add_argument('--workers', type=int, default=min(2, os.cpu_count()),
                    help='processes (one thread each) that train the subsets; the figures do not depend on it')
    ap.add_argument('--methods', default=';'.join(METHODS), help='method names separated by ;'); ap.add_argument('--reuse', action='store_true')
    ap.add_argument('--quick', action='store_true'); ap.add_argument('--out', default='results/lds.json')
    ap.add_argument('--scores', default=None, help="folder: each method's Q×N scores are saved there and read back "
                    "when present (a stopped run resumes; a slow method can run beside the training)")
    a = ap.parse_args()
    if a.quick: a.n, a.m, a.queries, a.pretrain, a.cg_iters, a.cg_docs = 60, 8, 6, 200, 3, 20
    t_start = time.perf_counter(); torch.manual_seed(0); load = dict(start=os.getloadavg()[0])
    pre_text, docs, queries, probes, other = texts(a.n, a.queries)
    tok = word_tokenizer(pre_text, a.vocab)
    cut = lambda ts: [tok.decode(tok(t)['input_ids'][:a.max_length]) for t in ts]
    docs, queries = cut(docs), cut(queries)
    model = pretrained_start(tok, pre_text, a.pretrain)
    mods = linear_modules(model); names = [n for m in mods for n in (m + '.weight', m + '.bias')]
    ctx = dict(model=model, tok=tok, docs=docs, queries=queries, probes=probes, mods=mods, names=names, args=a, notes={},
               qbatch=right_padded(tok, queries), pbatch=lm_batch(tok, probes))
    # steers: 2 random unit vectors and 2 CAA vectors at each block's output; t_x centred over the vocabulary
    steers = []
    groups = [('exception', 'string'), ('class', 'number')]
    for li in range(model.config.n_layer):
        layer = f'transformer.h.{li}'
        for j in range(2):
            s = torch.randn(model.config.n_embd, generator=torch.Generator().manual_seed(100 * li + j))
            steers.append((layer, f'random {j}', s / s.norm(), None))
        for pos, neg in groups:
            P_ = [p for p in other if pos in p.lower() and neg not in p.lower()][:16]
            N_ = [p for p in other if neg in p.lower() and pos not in p.lower()][:16]
            k = min(len(P_), len(N_))
            v = caa_vector(model, tok, layer, cut(P_[:k]), cut(N_[:k])).detach()
            steers.append((layer, f'CAA {pos} − {neg} ({k} pairs)', v, (cut(P_[:k]), cut(N_[:k]))))
    ctx['T'] = torch.stack([centred(steer_shift(model, tok, l, v, probes).double()) for l, _, v, _ in steers])
    ctx['steers'] = steers
    base = measurements(model, ctx)
    Q = len(base); nq = len(queries)
    print(f"θ₀: GPT-2 2×64 over {len(tok)} words, pretrained {a.pretrain} steps on {len(pre_text.split()):,} words of "
          f"help text outside the corpus; {sum(dict(model.named_parameters())[n].numel() for n in names):,} parameters "
          f"trained and scored. Corpus N = {a.n}, {nq} query paragraphs, {len(steers)} steers × {len(probes)} probes",
          flush=True)

    # ---- ground truth: train on each subset, each seed
    mask = random_subsets(a.n, a.m, seed=0)
    old = json.load(open(a.out)) if a.reuse else None
    if old:
        if old.get('threads', 1) != torch.get_num_threads():   # θ₀'s pretraining is bitwise reproducible only so
            raise SystemExit(f"--reuse: {a.out} was measured with {old.get('threads', 1)} torch thread(s), this run has "
                             f"{torch.get_num_threads()}: θ₀ would differ; set OMP_NUM_THREADS={old.get('threads', 1)}")
        meas = np.array(old['measurements']); t_train = old['train_seconds']
        assert meas.shape == (a.seeds, a.m, Q), (meas.shape, (a.seeds, a.m, Q))
    else:
        bd = right_padded(tok, docs); t0 = time.perf_counter()
        meas = subset_truth(model, bd, mask, names, a, ctx) - base
        t_train = time.perf_counter() - t0
        full = train_on(model, bd, names, a.lr, a.epochs, a.batch, seed=0)
        ctx['notes']['training'] = (f"loss on the corpus {text_losses(model, bd).mean():.3f} at θ₀ → "
                                    f"{text_losses(full, bd).mean():.3f} after training on all N; held-out query loss "
                                    f"{base[:nq].mean():.3f} → {measurements(full, ctx)[:nq].mean():.3f}")
    truth = meas.mean(0)
    print(f"training {a.m} subsets × {a.seeds} seeds: {t_train:.0f} s. {ctx['notes'].get('training', '')}", flush=True)

    # ---- resolving power: ceilings, then the methods
    groups_q = dict(all=slice(None), losses=slice(0, nq), steers=slice(nq, Q))
    def table(pred_or_none, meas_a=None, meas_b=None):
        out = {}
        for g, sl in groups_q.items():
            if pred_or_none is not None and np.isnan(pred_or_none[:, sl]).all(): out[g] = None; continue
            ok = slice(None) if pred_or_none is None else ~np.isnan(pred_or_none).any(0)   # queries a method scores
            r = (seed_ceiling(meas_a[:, sl], meas_b[:, sl]) if pred_or_none is None
                 else lds(pred_or_none[:, sl][:, ok[sl]], truth[:, sl][:, ok[sl]]))
            out[g] = [r['lds'], r['low'], r['high']]
        return out
    ceilings = {}
    if a.seeds >= 2:
        r = ceilings['seed agreement r (one seed vs the other; not a ceiling)'] = table(None, meas[0], meas[1])
        ceilings[f'a perfect predictor against the {a.seeds}-seed mean, sqrt(S r / (1 + (S − 1) r))'] = {
            g: [mean_of_seeds_bound(max(x, 1e-12), a.seeds) for x in v] for g, v in r.items()}
    dm = {g: datamodel_ceiling(mask, truth[:, sl]) for g, sl in groups_q.items()}
    ceilings['linear datamodel, fitted on half the subsets'] = {g: [r['lds'], r['low'], r['high']] for g, r in dm.items()}
    for k, v in ceilings.items(): print(f"ceiling, {k}: {v}", flush=True)

    ctx['damping'] = mean_eigenvalue_damping(ekfac(ctx))
    ctx['qgrads'] = query_gradients(ctx)
    cmd = 'OMP_NUM_THREADS=1 PYTHONPATH=. python ' + ' '.join(sys.argv)
    def save(rows):
        "The JSON so far (rewritten after every method: a stopped run keeps what it measured)."
        c = cmd
        if old:
            done = {r['method'] for r in rows}
            rows = [r for r in old['rows'] if r['method'] not in done and r['method'] in METHODS] + rows   # renamed: gone
            order = list(METHODS)                                  # the table in METHODS' order, whichever run measured a row
            rows = sorted(rows, key=lambda r: order.index(r['method']) if r['method'] in order else len(order))
            c = old['command'] + ' ; then ' + cmd
        if ctx.get('score_commands'): c += ' (scores read from --scores, computed by: ' + ' ; '.join(ctx['score_commands']) + ')'
        res = dict(command=c, run_seconds=time.perf_counter() - t_start + t_extra[0] + (old['run_seconds'] if old else 0),
                   cores=f'{os.cpu_count()} CPU cores, OMP_NUM_THREADS=1, {a.workers} training processes', load_average=load,
                   sizes=dict(N=a.n, M=a.m, seeds=a.seeds, queries=Q, query_paragraphs=nq, steers=len(steers),
                              probes=len(probes), epochs=a.epochs, lr=a.lr, batch=a.batch, vocab=len(tok),
                              max_length=a.max_length, pretrain_steps=a.pretrain, damping=ctx['damping'],
                              cg_iters=a.cg_iters, cg_docs=a.cg_docs, trak_dim=a.trak_dim,
                              trained_parameters=sum(dict(model.named_parameters())[n].numel() for n in names)),
                   steers=[f"{l}: {k}" for l, k, _, _ in steers], notes={k: v for k, v in ((old['notes'] if old else {}) | ctx['notes']).items()
                                                                      if k == 'training' or k in {r['method'] for r in rows}},
                   threads=torch.get_num_threads(), train_seconds=t_train, ceilings=ceilings, rows=rows, measurements=meas.tolist())
        Path(a.out).parent.mkdir(exist_ok=True, parents=True)
        json.dump(res, open(a.out, 'w'), indent=1, default=float)
        return res
    t_extra = [0.0]                                             # seconds of methods whose scores were read back
    save([])
    rows = []
    for name in [s.strip() for s in a.methods.split(';')]:
        t1 = time.perf_counter()
        try:
            sc, t_cached = cached_scores(a, name, ctx, cmd)
            if t_cached is not None: t1 -= t_cached; t_extra[0] += t_cached
            assert sc.shape == (Q, a.n), f"scores of shape {sc.shape}, expected {(Q, a.n)}"
            if np.nanmax(np.nanstd(sc, 1)) == 0: raise ValueError(f"the method's scores are the same for every training point (all {sc.flat[0]:g})")
            pred = -subset_predictions(sc, mask)                 # Σ_{z∈S} ρ_q(z), ρ = −score
            r = dict(method=name, seconds=time.perf_counter() - t1, **table(pred))
        except Exception as e:
            traceback.print_exc()
            r = dict(method=name, seconds=time.perf_counter() - t1, error=f"{type(e).__name__}: {str(e)[:400]}")
        if name in ctx['notes']: r['note'] = ctx['notes'][name]
        rows.append(r); save(rows)
        print(f"  {name}: " + (r['error'][:200] if 'error' in r else
              f"LDS all {r['all'][0]:+.3f} [{r['all'][1]:+.2f}, {r['all'][2]:+.2f}], "
              f"losses {r['losses'][0] if r['losses'] else float('nan'):+.3f}, "
              f"steers {r['steers'][0] if r['steers'] else float('nan'):+.3f}") + f" ({r['seconds']:.0f} s)", flush=True)
    load['end'] = os.getloadavg()[0]; res = save(rows)
    print(f"\n{res['command']}\nwrote {a.out} ({res['run_seconds']:.0f} s)")

if __name__ == '__main__': main()
