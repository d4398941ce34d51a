"""Corpus scoring throughput and memory on SmolLM2-135M, side by side in ONE run: ours (`document_scores`) beside a
bare forward + backward pass over the same batches and beside kronfluence's pairwise scores, at N and 4N documents;
and k = 8 queries in one pass against 8 single-query passes.

    OMP_NUM_THREADS=1 PYTHONPATH=. python bench/corpus_throughput.py   # N = 32 and 128, batch 8, 5 repeats: 22–33 min on 2 quiet cores

Query: a fixed random "preconditioned query" q̃ on the weights of every nn.Linear layer of the 30 blocks (210 layers,
≈ 106M parameters; seed 0), given in float32 like the model. Documents: N paragraphs of Python's help text cut to L
tokens. Each measurement runs in a fresh process (one thread each) and is repeated R times, the repeats interleaved
(repeat r runs every configuration once, in an order rotated by r), so that the load of a shared machine falls on
all of them alike; the tables report medians. Memory: the peak of the process's resident set (VmRSS, sampled every
2 ms by a thread) during the scoring call, less the resident set just before it (model and query already loaded).
`bare` = text_losses(...).sum().backward() on the same length-sorted, left-padded batches with the same parameters
requiring grad: the cost floor. kronfluence: `compute_pairwise_scores` with the 'identity' strategy (no factors:
the scores are the same ⟨q, ∇ℓ(z)⟩ quantity, its query being the gradient of one probe text's loss), timed without
factor fitting. k = 8: a query on the 30 `mlp.down_proj` weights (26.5M parameters), 8 random queries scored in
one `document_scores` call against 8 calls of one query each, in the same process (order alternating by repeat).
"""
import argparse, json, os, statistics, subprocess, sys, tempfile, threading, time
from pathlib import Path
import torch
sys.path.insert(0, str(Path(__file__).parent))

def rss_mb() -> float:
    "The process's current resident set, MB."
    with open('/proc/self/status') as f:
        return next(int(l.split()[1]) for l in f if l.startswith('VmRSS')) / 1024

class PeakRSS:
    "Context sampling the resident set every 2 ms: `.added` = its peak during the block less its value before."
    def __enter__(self):
        self.before = self.peak = rss_mb(); self.stop = threading.Event()
        def watch():
            while not self.stop.wait(0.002): self.peak = max(self.peak, rss_mb())
        self.thread = threading.Thread(target=watch, daemon=True); self.thread.start(); return self
    def __exit__(self, *exc):
        self.stop.set(); self.thread.join(); self.peak = max(self.peak, rss_mb()); self.added = self.peak - self.before

def documents(tok, n, length):
    "The first n of the paragraphs the parent process chose (tokenizing all of Python's help text once)."
    if 'TP_DOCS' in os.environ: return json.loads(Path(os.environ['TP_DOCS']).read_text())[:n]
    from pydoc_data.topics import topics
    import numpy as np
    out = []                                   # paragraphs of ≥ `length` tokens, each cut to `length`, shuffled
    for k in sorted(topics):
        for p in topics[k].split('\n\n'):
            ids = tok(' '.join(p.split()))['input_ids']
            if len(ids) >= length: out.append(tok.decode(ids[:length]))
    np.random.default_rng(0).shuffle(out)
    return out[:n]

def linear_weights(model, part='.'):
    return [n + '.weight' for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)
            and m is not model.get_output_embeddings() and part in n]

def random_query(model, names, seed=0):
    g, P = torch.Generator().manual_seed(seed), dict(model.named_parameters())
    return {n: torch.randn(P[n].shape, generator=g) for n in names}

def ours(model, tok, docs, a):
    from ias_nb.corpus import document_scores
    q = random_query(model, linear_weights(model))
    with PeakRSS() as m:
        t0 = time.perf_counter(); s = document_scores(model, tok, docs, q, batch_size=a.batch, progress=False)
        sec = time.perf_counter() - t0
    return dict(seconds=sec, peak_added_mb=m.added, checksum=float(s.sum()))

def bare(model, tok, docs, a):
    from ias_nb.corpus import token_ids, rank_batches
    from ias_nb.steering import padded_batch, pad_id
    from ias_nb.alignment import text_losses
    P = dict(model.named_parameters())
    for p in model.parameters(): p.requires_grad_(False)
    for n in linear_weights(model): P[n].requires_grad_(True)
    with PeakRSS() as m:
        t0 = time.perf_counter()
        ids = token_ids(tok, docs, None); pad = pad_id(tok)
        for b in rank_batches([len(x) for x in ids], a.batch):
            model.zero_grad(set_to_none=True)
            text_losses(model, padded_batch([ids[i] for i in b], pad)).sum().backward()
        sec = time.perf_counter() - t0
    return dict(seconds=sec, peak_added_mb=m.added)

def kronfluence(model, tok, docs, a):
    from ias_nb.corpus import right_padded, RowsDataset, trim_padding
    from _kronfluence_peer import DocumentTask
    from kronfluence.analyzer import Analyzer, prepare_model
    from kronfluence.arguments import FactorArguments, ScoreArguments
    from kronfluence.utils.dataset import DataLoaderKwargs
    task = DocumentTask([n[:-len('.weight')] for n in linear_weights(model)])
    with tempfile.TemporaryDirectory() as out:
        an = Analyzer(analysis_name='tp', model=prepare_model(model, task), task=task, output_dir=out,
                      disable_tqdm=True, disable_model_save=True)
        an.set_dataloader_kwargs(DataLoaderKwargs(collate_fn=trim_padding))
        an.fit_all_factors(factors_name='id', dataset=RowsDataset(right_padded(tok, docs[:1])), per_device_batch_size=1,
                           factor_args=FactorArguments(strategy='identity'), overwrite_output_dir=True)
        with PeakRSS() as m:
            t0 = time.perf_counter()
            an.compute_pairwise_scores(scores_name='s', factors_name='id', query_dataset=RowsDataset(right_padded(tok, docs[:1])),
                                       train_dataset=RowsDataset(right_padded(tok, docs)), per_device_query_batch_size=1,
                                       per_device_train_batch_size=a.batch, score_args=ScoreArguments(), overwrite_output_dir=True)
            sec = time.perf_counter() - t0
    return dict(seconds=sec, peak_added_mb=m.added)

def k_queries(model, tok, docs, a):
    "8 queries in one call vs 8 calls of one query (order alternating with the repeat), same process."
    from ias_nb.corpus import document_scores
    names = linear_weights(model, 'mlp.down_proj')
    qs = [random_query(model, names, seed=j) for j in range(8)]
    def together():
        t0 = time.perf_counter(); s = document_scores(model, tok, docs, qs, batch_size=a.batch, progress=False)
        return time.perf_counter() - t0, s
    def apart():
        t0 = time.perf_counter()
        s = torch.stack([document_scores(model, tok, docs, q, batch_size=a.batch, progress=False) for q in qs])
        return time.perf_counter() - t0, s
    first, second = (together, apart) if a.rep % 2 == 0 else (apart, together)
    (t1, s1), (t2, s2) = first(), second()
    (tt, st), (ta, sa) = ((t1, s1), (t2, s2)) if a.rep % 2 == 0 else ((t2, s2), (t1, s1))
    assert torch.allclose(st, sa, rtol=1e-6, atol=1e-9 * sa.abs().max().item()), 'k queries at once ≠ one at a time'
    return dict(seconds=tt, seconds_8_single=ta, ratio_together_vs_single=tt / ta)

def worker(a):
    from ias_nb.models import load_smollm2
    model, tok = load_smollm2()
    model.eval()
    docs = documents(tok, a.n, a.length)
    r = dict(kronfluence=kronfluence, ours=ours, bare=bare, k_queries=k_queries)[a.worker](model, tok, docs, a)
    print('RESULT ' + json.dumps(dict(worker=a.worker, n=a.n, rep=a.rep, docs_per_s=a.n / r['seconds'], **r)), flush=True)

def run(args, docs_file):
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore', TP_DOCS=docs_file)
    out = subprocess.run([sys.executable, __file__] + args, env=env, capture_output=True, text=True)
    line = [l for l in out.stdout.splitlines() if l.startswith('RESULT ')]
    if not line: return dict(error=(out.stderr or out.stdout)[-600:])
    return json.loads(line[-1][7:])

def medians(rows, key):
    "(worker, n) → median of `key` over the repeats that succeeded."
    out = {}
    for r in rows:
        if 'error' not in r and key in r: out.setdefault((r['worker'], r['n']), []).append(r[key])
    return {k: statistics.median(v) for k, v in out.items()}

def report(rows, a, repeats, seconds):
    "The medians over the repeats so far: printed, and written with every row to `a.out`."
    speed, mem = medians(rows, 'docs_per_s'), medians(rows, 'peak_added_mb')
    loads = [r['load_1min'] for r in rows]
    cmd = 'OMP_NUM_THREADS=1 PYTHONPATH=. python ' + ' '.join(sys.argv)
    print(f"\n{cmd}\nSmolLM2-135M, L = {a.length} tokens, batch {a.batch}, query on 210 linear layers, 1 thread per process, "
          f"medians of {repeats} interleaved repeats; {seconds / 60:.0f} min, load average {min(loads):.1f}–{max(loads):.1f}")
    print(f"{'run':12} {'docs':>5} {'docs/s':>8} {'÷ bare':>7} {'÷ kronf.':>8} {'peak +MB':>9} {'min–max docs/s':>16}")
    summary = {}
    for w in ('ours', 'bare', 'kronfluence'):
        for n in (a.n, 4 * a.n):
            if (w, n) not in speed: print(f"{w:12} {n:5d} failed"); continue
            all_ = [r['docs_per_s'] for r in rows if r['worker'] == w and r['n'] == n and 'error' not in r]
            vb, vk = speed[(w, n)] / speed.get(('bare', n), float('nan')), speed[(w, n)] / speed.get(('kronfluence', n), float('nan'))
            print(f"{w:12} {n:5d} {speed[(w, n)]:8.2f} {vb:7.2f} {vk:8.2f} {mem[(w, n)]:9.0f} {min(all_):7.2f}–{max(all_):.2f}")
            summary[f'{w}_N{n}'] = dict(docs_per_s=speed[(w, n)], peak_added_mb=mem[(w, n)], vs_bare=vb, vs_kronfluence=vk,
                                        repeats=len(all_))
        if (w, a.n) in mem and (w, 4 * a.n) in mem:
            summary[f'{w}_peak_memory_4N_vs_N'] = mem[(w, 4 * a.n)] / mem[(w, a.n)]
    kq = medians(rows, 'ratio_together_vs_single').get(('k_queries', a.kn))
    if kq is not None:
        summary['k8_time_together_vs_8_single'] = kq
        print(f"k = 8 queries (mlp.down_proj, {a.kn} documents): one pass takes {kq:.2f}× the time of 8 single-query passes (median)")
    print(json.dumps(summary, indent=1))
    Path(a.out).parent.mkdir(exist_ok=True, parents=True)
    json.dump(dict(command=cmd, sizes=dict(N=a.n, length=a.length, batch=a.batch, repeats=repeats, k_queries_n=a.kn),
                   note=f'medians of interleaved repeats, each in a fresh one-thread process, on {os.cpu_count()} CPU cores; '
                        f'1-minute load average after each measurement {min(loads):.1f}–{max(loads):.1f} (1 = this bench '
                        f'alone); {seconds / 60:.0f} min in all', rows=rows, summary=summary),
              open(a.out, 'w'), indent=1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--worker'); ap.add_argument('--n', type=int, default=32); ap.add_argument('--length', type=int, default=32)
    ap.add_argument('--batch', type=int, default=8); ap.add_argument('--rep', type=int, default=0)
    ap.add_argument('--repeats', type=int, default=5); ap.add_argument('--kn', type=int, default=16)
    ap.add_argument('--out', default='results/corpus_throughput.json')
    a = ap.parse_args()
    if a.worker: return worker(a)
    base = ['--length', str(a.length), '--batch', str(a.batch)]
    configs = [(w, n) for n in (a.n, 4 * a.n) for w in ('ours', 'bare', 'kronfluence')] + [('k_queries', a.kn)]
    rows, t_start = [], time.time()
    from ias_nb.models import load_smollm2
    docs_file = Path(tempfile.mkdtemp()) / 'docs.json'
    docs_file.write_text(json.dumps(documents(load_smollm2()[1], 4 * max(a.n, a.kn), a.length)))
    for rep in range(a.repeats):
        for w, n in configs[rep % len(configs):] + configs[:rep % len(configs)]:      # rotated: interleaved repeats
            r = run(['--worker', w, '--n', str(n), '--rep', str(rep)] + base, str(docs_file))
            r.setdefault('worker', w); r.setdefault('n', n); r['rep'] = rep; r['load_1min'] = os.getloadavg()[0]; rows.append(r)
            print(rep, w, n, r if 'error' in r else
                  f"{r['docs_per_s']:.2f} docs/s" + (f", +{r['peak_added_mb']:.0f} MB" if 'peak_added_mb' in r else
                                                     f", 8 apart {r['seconds_8_single']:.1f} s"), flush=True)
        report(rows, a, rep + 1, time.time() - t_start)         # medians so far, written after every repeat

if __name__ == '__main__': main()
