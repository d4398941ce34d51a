"""The gradient index (chapter 12) measured: agreement with the exact scores against the projection size, build
throughput against a bare forward + backward pass, query latency over 10⁵ and 10⁶ rows, bytes per document, and
Bergson (`bergson build`, CPU) and kronfluence's pairwise scores beside it on the same model and documents.

    OMP_NUM_THREADS=1 PYTHONPATH=. python bench/index.py                       # all parts, ~20 CPU-minutes
    OMP_NUM_THREADS=1 PYTHONPATH=. python bench/index.py --parts latency       # one part (results merged)

accuracy   tiny GPT-2 (chapter 04, trained on Python's help text), N documents of that help text (paragraphs, then sentences; ≤ 64 tokens);
           five steers at block 2 (a CAA vector, classes vs numbers, and four random directions of its norm), each
           traced with the identity preconditioner over every Conv1D weight and bias of the 4 blocks: exact ρ by
           `document_scores`, then indexes with k = k_out = k_in per layer; Spearman and top-50 overlap per steer.
throughput documents/s of `build_index` (dims 16, every linear layer but the head) ÷ documents/s of a bare
           forward + backward (`text_losses(...).sum().backward()` on the same length-sorted batches), same process.
latency    synthetic float16 rows (Gaussian), D = 256 and 1,024, N = 10⁵ and 10⁶, shards of 2¹⁶ rows memory-mapped
           from disk, cold (pages evicted) and warm; one steer and 8 at once, top 50, torch and faiss; recall against
           the top 50 of float32 scores.
bergson    `bergson build` on the tiny GPT-2 and the first 256 accuracy documents (projection_dim 16 per module,
           CPU, one process) beside `build_index` (dims 16): documents/s and bytes per document; agreement: Spearman
           of the pairwise cosine similarities of the documents' projected gradients with the exact ones (an
           unprojected index), a comparison that needs neither tool's query side.
kronfluence `compute_pairwise_scores` (EK-FAC, λ = 1, float64) of the five steers' functionals f_s on the tiny GPT-2
           (Conv1D as nn.Linear) and the first 256 accuracy documents, beside ours with EK-FAC factors that kronfluence
           also fits (`ekfac_preconditioner`), the query scored by an exact and by a k = 16 float16 index: Spearman and
           top-50 overlap per steer with kronfluence's scores; seconds to fit, build and query on each side.
"""
import argparse, json, os, shutil, subprocess, sys, tempfile, time
from pathlib import Path
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]

def sentences(tok, n:int, max_tokens:int=64) -> list:
    """n distinct documents of Python's help text, 8 words to `max_tokens` tokens: its paragraphs
    (`python_doc_paragraphs`), then its sentences."""
    import re
    from ias_nb.models import python_help_text
    from ias_nb.corpus import python_doc_paragraphs
    found = dict.fromkeys(python_doc_paragraphs(695) + [s.strip() for s in re.split(r'(?<=[.!?])\s+',
                                                         ' '.join(python_help_text().split()))])
    keep = [s for s in found if len(s.split()) >= 8 and s[0].isalpha() and len(tok(s)['input_ids']) <= max_tokens]
    if len(keep) < n: raise SystemExit(f"only {len(keep)} sentences fit; ask for --n ≤ {len(keep)}")
    return keep[:n]

def steers(model, tok):
    "Five (name, vector) steers at block 2: a CAA vector and four random directions of its norm."
    from ias_nb.steering import caa_vector
    v = caa_vector(model, tok, 'transformer.h.2', ["A class definition creates a class object",
                   "Classes provide a means of bundling data"], ["Integers support the usual arithmetic operations",
                   "Floating point numbers are usually implemented"])
    g = torch.Generator().manual_seed(0)
    rand = [torch.randn(len(v), generator=g) for _ in range(4)]
    return [('caa', v)] + [(f'random{i}', r / r.norm() * v.norm()) for i, r in enumerate(rand)]

PROBES = ["The class", "An instance of", "The method", "A number", "The function", "A string"]

def queries(model, tok, names):
    "−q̃ of each steer (identity preconditioner, λ = 1) on the parameters `names`."
    from ias_nb.corpus import steer_query
    return [{n: -t for n, t in steer_query(model, tok, 'transformer.h.2', v, PROBES, params=names).items()}
            for _, v in steers(model, tok)]

def project_rows(X:torch.Tensor, specs, mats) -> torch.Tensor:
    "Exact rows (n × Σ d_out·d_in, the unprojected layout) projected layer by layer: P_out G P_inᵀ."
    out, o = [], 0
    for s in specs:
        G = X[:, o:o + s.d_out * s.d_in].view(len(X), s.d_out, s.d_in); o += s.d_out * s.d_in
        P_out, P_in = mats[s.name]
        out.append((P_out @ G @ P_in.T).flatten(1))
    return torch.cat(out, 1)

def accuracy(a) -> dict:
    """One exact index (dims=None, float32: the rows *are* the per-document gradients; chapter 12 checks that its
    scores equal `document_scores`), projected for every k offline — what a build with that k computes, as the
    projection is linear — and one real float16 build at k = 16 to check that shortcut."""
    from scipy.stats import spearmanr
    from ias_nb.models import load_tiny_gpt2
    from ias_nb.index import build_index, layer_specs, projections
    model, tok = load_tiny_gpt2(progress=False)
    docs = sentences(tok, a.n)
    work = Path(a.tmp or tempfile.mkdtemp())
    t0 = time.perf_counter()
    exact_ix = build_index(model, tok, docs, work / 'exact', dims=None, dtype='float32', batch_size=8, shard_size=128,
                           progress=False)
    exact_s = time.perf_counter() - t0
    qs = queries(model, tok, exact_ix.params)
    exact = exact_ix.scores(model, qs, tok)
    Q = exact_ix.project(model, qs)                                  # k × W, unprojected layout
    top = lambda x: set(x.argsort(descending=True)[:50].tolist())
    rows = []
    for k in a.ks:
        specs = layer_specs(model, dims=k); mats = projections(specs, 0)
        Qk = project_rows(Q, exact_ix.specs, mats)
        got = torch.cat([project_rows(exact_ix.rows(i).double(), exact_ix.specs, mats).half().double() @ Qk.T
                         for i in range(len(exact_ix.records))]).T
        sp = [spearmanr(g, e)[0] for g, e in zip(got, exact)]
        ov = [len(top(g) & top(e)) / 50 for g, e in zip(got, exact)]
        rows.append(dict(k=k, width=Qk.shape[1], bytes_per_doc=2 * Qk.shape[1], spearman=sp, top50=ov,
                         spearman_mean=float(np.mean(sp)), top50_mean=float(np.mean(ov))))
        print(f"k = {k:3d}  D = {Qk.shape[1]:6d}  Spearman {np.mean(sp):.3f} [{min(sp):.3f}, {max(sp):.3f}]  top-50 "
              f"{np.mean(ov):.2f} [{min(ov):.2f}, {max(ov):.2f}]", flush=True)
        if k == 16: got16 = got
    t0 = time.perf_counter()
    ix16 = build_index(model, tok, docs, work / 'k16', dims=16, batch_size=8, shard_size=256, progress=False)
    build16_s = time.perf_counter() - t0
    real = ix16.scores(model, qs, tok)
    check = dict(max_abs_difference=float((real - got16).abs().max()), max_abs_score=float(got16.abs().max()))
    print('real k = 16 build vs projected exact rows:', check, flush=True)
    figure(rows, a.n, Path(a.out).with_name('index_accuracy.png'))
    shutil.rmtree(work / 'exact'); shutil.rmtree(work / 'k16')
    return dict(model='tiny-gpt2', n_documents=a.n, steers=[n for n, _ in steers(model, tok)],
                params=f'{len(exact_ix.params)} tensors (every Conv1D weight and bias of the 4 blocks)',
                exact_build_seconds=exact_s, k16_build_seconds=build16_s, k16_real_build_vs_projected=check, rows=rows)

def figure(rows, n, path):
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.2))
    D = [r['width'] for r in rows]
    for a_, key, lab in ((ax[0], 'spearman', 'Spearman with exact ρ'), (ax[1], 'top50', 'top-50 overlap')):
        vals = np.array([r[key] for r in rows])
        a_.plot(D, vals[:, 0], 'o-', label='CAA steer')
        a_.fill_between(D, vals[:, 1:].min(1), vals[:, 1:].max(1), alpha=0.3, color='C1', label='4 random steers (range)')
        a_.set(xscale='log', xlabel='row width D (float16 values per document)', ylabel=lab, ylim=(0, 1.02))
        for r in rows: a_.annotate(f"k={r['k']}", (r['width'], r[key][0]), fontsize=7, textcoords='offset points', xytext=(3, -10))
    ax[0].legend(fontsize=8)
    fig.suptitle(f'index scores vs exact document_scores, tiny GPT-2, {n} documents', fontsize=10)
    fig.tight_layout(); fig.savefig(path, dpi=120)

def throughput(a) -> dict:
    from ias_nb.index import build_index, layer_specs
    from ias_nb.corpus import token_ids, rank_batches
    from ias_nb.steering import padded_batch, pad_id
    from ias_nb.alignment import text_losses
    out = []
    for name in a.models:
        from ias_nb.models import load_causal_lm
        model, tok = load_causal_lm(name)
        n = a.n_throughput[name]
        docs = sentences(tok, n, 32)
        lin = {s.name + '.weight' for s in layer_specs(model)}
        def bare():
            for n_, p in model.named_parameters(): p.requires_grad_(n_ in lin)
            ids = token_ids(tok, docs); pad = pad_id(tok)
            for b in rank_batches([len(x) for x in ids], 8):
                model.zero_grad(set_to_none=True)
                text_losses(model, padded_batch([ids[i] for i in b], pad)).sum().backward()
            model.zero_grad(set_to_none=True)
        t = {}
        for rep in range(2):                                  # interleaved, twice: the machine is shared
            t0 = time.perf_counter(); bare(); t.setdefault('bare', []).append(time.perf_counter() - t0)
            d = Path(tempfile.mkdtemp())
            t0 = time.perf_counter()
            ix = build_index(model, tok, docs, d / 'ix', dims=16, batch_size=8, shard_size=256, progress=False)
            t.setdefault('build', []).append(time.perf_counter() - t0); shutil.rmtree(d)
        r = dict(model=name, n_documents=n, tokens_max=32, batch=8, layers=len(ix.specs), width=ix.width,
                 bytes_per_doc=2 * ix.width, bare_docs_per_s=n / min(t['bare']), build_docs_per_s=n / min(t['build']))
        r['ratio_vs_bare'] = r['build_docs_per_s'] / r['bare_docs_per_s']
        print(r, flush=True); out.append(r)
    return dict(rows=out)

def synthetic_index(folder:Path, n:int, D:int, shard:int=1 << 16):
    "An index folder of n Gaussian float16 rows of width D (a one-layer manifest), written shard by shard."
    from ias_nb.index import IndexFolder, _atomic_write
    f = IndexFolder(folder); folder.mkdir(parents=True, exist_ok=True)
    layers = [dict(name='synthetic', kind='linear', d_out=D, d_in=1, bias=False, k_out=D, k_in=1, projected=False)]
    _atomic_write(f.manifest_path, json.dumps(dict(format=1, model_class='', model_name='synthetic', parameters_sha256='',
        layers=layers, seed=0, dtype='float16', max_length=None, shard_size=shard, n_documents=n, width=D)).encode())
    g = np.random.default_rng(0)
    for i, s in enumerate(range(0, n, shard)):
        m = min(shard, n - s)
        np.save(f.path('rows', i), g.standard_normal((m, D), dtype=np.float32).astype(np.float16))
        _atomic_write(f.path('shard', i), json.dumps(dict(n=m, docs_sha256='', rows_sha256='',
                      rows_bytes=f.path('rows', i).stat().st_size, rank=0)).encode())

def evict(folder:Path):
    "Drop these files' pages from the page cache (posix_fadvise DONTNEED on each: no other file is touched)."
    for f in folder.glob('*.npy'):
        fd = os.open(f, os.O_RDONLY)
        try: os.fsync(fd); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally: os.close(fd)

def latency(a) -> dict:
    """Top 50 for 1 and 8 projected queries, torch (16-bit product + rescored shortlist) and faiss (fp16 scalar
    quantizer), cold (the rows' pages evicted first) then warm (the best of two further calls); `exact`: the same
    documents as the top 50 of float32 scores over every row (`shard_scores`)."""
    from ias_nb.index import GradientIndex
    out, base = [], Path(a.tmp or tempfile.mkdtemp())
    for D in (256, 1024):
        for n in (10 ** 5, 10 ** 6):
            folder = base / f'syn-{D}-{n}'
            synthetic_index(folder, n, D)
            ix = GradientIndex(folder)
            for k in (1, 8):
                Qp = torch.randn(k, D, dtype=torch.float64)
                ref = torch.cat([ix.shard_scores(i, Qp) for i in range(len(ix.records))], 1).topk(50, dim=1).indices
                for method in ('torch', 'faiss'):
                    evict(folder)
                    t0 = time.perf_counter(); v, i = ix.top_projected(Qp, 50, method); cold = time.perf_counter() - t0
                    ts = []
                    for _ in range(2):
                        t0 = time.perf_counter(); v, i = ix.top_projected(Qp, 50, method); ts.append(time.perf_counter() - t0)
                    same = [len(set(x.tolist()) & set(y.tolist())) / 50 for x, y in zip(i, ref)]
                    r = dict(width=D, rows=n, queries=k, method=method, seconds=min(ts), cold_seconds=cold,
                             bytes_per_doc=2 * D, index_bytes=n * D * 2, recall_vs_exact=min(same))
                    print(r, flush=True); out.append(r)
            shutil.rmtree(folder)
    return dict(rows=out, note='2-core shared CPU, OMP_NUM_THREADS=1, torch 1 thread; warm = best of 2 calls after '
                'the cold one; cold = first call after posix_fadvise(DONTNEED) on the shard files')

def bergson(a) -> dict:
    "bergson build beside build_index on the tiny GPT-2, the same documents; agreement on pairwise cosines."
    from scipy.stats import spearmanr
    from ias_nb.models import load_tiny_gpt2
    from ias_nb.index import build_index
    model, tok = load_tiny_gpt2(progress=False)
    docs = sentences(tok, a.n_bergson)
    work = Path(tempfile.mkdtemp())
    model.save_pretrained(work / 'model'); tok.save_pretrained(work / 'model')
    (work / 'docs.jsonl').write_text('\n'.join(json.dumps(dict(text=d)) for d in docs) + '\n')
    env = dict(os.environ, OMP_NUM_THREADS='1', CUDA_VISIBLE_DEVICES='')
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, '-m', 'bergson', 'build', str(work / 'b'), '--model', str(work / 'model'),
                        '--dataset', str(work / 'docs.jsonl'), '--prompt_column', 'text', '--projection_dim', '16',
                        '--token_batch_size', '128', '--nproc_per_node', '1'], env=env, capture_output=True, text=True)
    b_wall = time.perf_counter() - t0
    if r.returncode: return dict(error=r.stderr[-800:])
    from bergson.data import load_gradients
    B = np.asarray(load_gradients(work / 'b'), dtype=np.float64)
    t0 = time.perf_counter()
    ours = build_index(model, tok, docs, work / 'ours', dims=16, batch_size=8, progress=False)
    o_wall = time.perf_counter() - t0
    exact = build_index(model, tok, docs, work / 'exact', dims=None, dtype='float32', batch_size=8, progress=False)
    rows = lambda ix: torch.cat([ix.rows(i) for i in range(len(ix.records))]).double().numpy()
    def cosines(X):
        X = X / np.linalg.norm(X, axis=1, keepdims=True); C = X @ X.T
        return C[np.triu_indices(len(C), 1)]
    E = cosines(rows(exact))
    return dict(n_documents=len(docs), bergson_rows=B.shape[0], bergson_width=B.shape[1],
                bergson_bytes_per_doc=int(B.shape[1] * 4), bergson_wall_seconds=b_wall,
                bergson_docs_per_s_incl_startup=len(docs) / b_wall, ours_wall_seconds=o_wall,
                ours_docs_per_s=len(docs) / o_wall, ours_width=ours.width, ours_bytes_per_doc=2 * ours.width,
                spearman_pairwise_cosines_vs_exact=dict(ours=float(spearmanr(cosines(rows(ours)), E)[0]),
                                                        bergson=float(spearmanr(cosines(B), E)[0])),
                note='bergson time includes its process start, model load and dataset tokenisation (~10 s here)')

def kronfluence(a) -> dict:
    """kronfluence's pairwise EK-FAC scores of each steer's functional f_s beside ours on the same model, documents and
    EK-FAC factors (kronfluence fits them either way): ours = the preconditioned query scored by an exact index and by a
    projected float16 one (dims 16); Spearman and top-50 overlap with kronfluence's scores, per steer, and the seconds."""
    from scipy.stats import spearmanr
    from kronfluence.arguments import FactorArguments, ScoreArguments
    from ias_nb.models import load_tiny_gpt2
    from ias_nb.index import build_index
    from ias_nb.corpus import (conv1d_as_linear, ekfac_preconditioner, steer_shift, readout_query, right_padded,
                               linear_modules, RowsDataset)
    sys.path.insert(0, str(Path(__file__).parent))
    from _kronfluence_peer import DocumentTask, _analyzer
    base, tok = load_tiny_gpt2(progress=False); model = conv1d_as_linear(base)     # kronfluence tracks nn.Linear
    docs = sentences(tok, a.n_kronfluence); mods = linear_modules(model)
    names = [f'{m}.{p}' for m in mods for p in ('weight', 'bias')]
    work, out = Path(tempfile.mkdtemp()), {}
    t0 = time.perf_counter(); P = ekfac_preconditioner(model, tok, docs, 1.0, modules=mods, batch_size=8)
    out['ours_ekfac_fit_seconds'] = time.perf_counter() - t0
    vs = steers(base, tok)
    T = [steer_shift(model, tok, 'transformer.h.2', v, PROBES).double() for _, v in vs]
    qs = [P(readout_query(model, tok, PROBES, t.float(), params=names)) for t in T]
    t0 = time.perf_counter(); exact = build_index(model, tok, docs, work / 'exact', dims=None, dtype='float32', progress=False)
    out['ours_exact_build_seconds'] = time.perf_counter() - t0
    t0 = time.perf_counter(); ix16 = build_index(model, tok, docs, work / 'k16', dims=16, progress=False)
    out['ours_k16_build_seconds'] = time.perf_counter() - t0
    t0 = time.perf_counter(); ours = {'exact index': exact.scores(model, qs, tok)}
    out['ours_exact_query_seconds'] = time.perf_counter() - t0
    t0 = time.perf_counter(); ours['k = 16 index, float16'] = ix16.scores(model, qs, tok)
    out['ours_k16_query_seconds'] = time.perf_counter() - t0
    f64 = dict(activation_covariance_dtype=torch.float64, gradient_covariance_dtype=torch.float64,
               eigendecomposition_dtype=torch.float64, lambda_dtype=torch.float64)
    train = RowsDataset(right_padded(tok, docs)); pb = right_padded(tok, PROBES)
    q = [dict(input_ids=pb['input_ids'][i], attention_mask=pb['attention_mask'][i], t=t[i].float())
         for t in T for i in range(len(PROBES))]
    an = _analyzer(model, DocumentTask(mods, 'steer'), str(work / 'kf'))
    t0 = time.perf_counter()
    an.fit_all_factors(factors_name='ekfac', dataset=train, per_device_batch_size=8,
                       factor_args=FactorArguments(strategy='ekfac', **f64), overwrite_output_dir=True)
    out['kronfluence_fit_seconds'] = time.perf_counter() - t0; t0 = time.perf_counter()
    an.compute_pairwise_scores(scores_name='s', factors_name='ekfac', query_dataset=q, train_dataset=train,
                               per_device_query_batch_size=len(q), per_device_train_batch_size=8,
                               score_args=ScoreArguments(damping_factor=1.0, precondition_dtype=torch.float64,
                                                         score_dtype=torch.float64, per_sample_gradient_dtype=torch.float64),
                               overwrite_output_dir=True)
    out['kronfluence_pairwise_seconds'] = time.perf_counter() - t0
    K = an.load_pairwise_scores('s')['all_modules'].double().reshape(len(T), len(PROBES), -1).sum(1)
    top = lambda x: set(torch.as_tensor(x).argsort(descending=True)[:50].tolist())
    rows = []
    for kind, X in ours.items():
        sp = [float(spearmanr(x, k)[0]) for x, k in zip(X, K)]; ov = [len(top(x) & top(k)) / 50 for x, k in zip(X, K)]
        rows.append(dict(ours=kind, spearman=sp, top50=ov, spearman_mean=float(np.mean(sp)), top50_mean=float(np.mean(ov))))
        print(f"{kind}: Spearman with kronfluence {np.mean(sp):.3f} [{min(sp):.3f}, {max(sp):.3f}]  top-50 "
              f"{np.mean(ov):.2f} [{min(ov):.2f}, {max(ov):.2f}]", flush=True)
    shutil.rmtree(work)
    return dict(model='tiny-gpt2 (Conv1D as nn.Linear)', n_documents=len(docs), steers=[n for n, _ in vs],
                modules=f'{len(mods)} nn.Linear layers of the 4 blocks (weights and biases)', damping=1.0,
                rows=rows, **out, note='ours and kronfluence each fit EK-FAC factors with kronfluence (ours through '
                'ekfac_preconditioner); kronfluence scores ⟨(H+λI)⁻¹∇f_s, ∇ℓ(z)⟩ with f_s = Σ_x ⟨t_x, last-token '
                'logits⟩, the query ours preconditions and scores from the index; seconds on 2 shared CPU cores')

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--parts', default='accuracy,throughput,latency,bergson,kronfluence')
    ap.add_argument('--n', type=int, default=2000, help='documents for the accuracy curve')
    ap.add_argument('--ks', default='1,2,4,8,16,32')
    ap.add_argument('--models', default='tiny-gpt2,smollm2')
    ap.add_argument('--n-bergson', type=int, default=256)
    ap.add_argument('--n-kronfluence', type=int, default=256)
    ap.add_argument('--tmp', help='folder for the synthetic indexes (default: a temporary folder)')
    ap.add_argument('--out', default=str(ROOT / 'results' / 'index.json'))
    a = ap.parse_args()
    a.ks = [int(k) for k in a.ks.split(',')]; a.models = a.models.split(',')
    a.n_throughput = {'tiny-gpt2': 256, 'smollm2': 32}
    res = json.loads(Path(a.out).read_text()) if Path(a.out).exists() else {}
    for part in a.parts.split(','):
        t0 = time.perf_counter()
        res[part] = globals()[part](a)
        res[part]['command'] = 'OMP_NUM_THREADS=1 PYTHONPATH=. python bench/index.py ' + ' '.join(sys.argv[1:])
        res[part]['wall_seconds'] = time.perf_counter() - t0
        Path(a.out).write_text(json.dumps(res, indent=1, default=float))
        print(f"{part}: {res[part]['wall_seconds']:.0f} s", flush=True)

if __name__ == '__main__': main()
