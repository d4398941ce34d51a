"""Corpus scoring throughput and memory on SmolLM2-135M: ours (`document_scores`, 1 and 2 processes) beside a bare
forward + backward pass over the same batches and beside kronfluence's pairwise scores.

    OMP_NUM_THREADS=1 PYTHONPATH=. python bench/corpus_throughput.py            # a few minutes on 2 cores

Query: a fixed random "preconditioned query" q̃ on the weights of every nn.Linear layer of the 30 blocks (210 layers,
≈ 106M parameters; seed 0). Documents: N paragraphs of Python's help text cut to L tokens. Each measurement runs in
a fresh process (one thread each): documents/s of the scoring call, and the peak resident memory it added to the
process (getrusage ru_maxrss after − before; the model itself is loaded before). `bare` = text_losses(...).sum()
.backward() on the same length-sorted, left-padded batches with the same parameters requiring grad: the cost floor.
kronfluence: `compute_pairwise_scores` with the 'identity' strategy (no factors: the scores are the same
⟨q, ∇ℓ(z)⟩ quantity, its query being the gradient of one probe text's loss), timed without factor fitting.
2 processes: `torchrun --nproc_per_node 2` (gloo), each rank scoring its shard; wall time of the slowest rank.
"""
import argparse, json, os, resource, subprocess, sys, tempfile, time
from pathlib import Path
import torch
sys.path.insert(0, str(Path(__file__).parent))

def rss_mb(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

def documents(tok, n, length):
    from lds import paragraphs
    return paragraphs(tok, n, length)

def linear_weights(model):
    return [n + '.weight' for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and m is not model.get_output_embeddings()]

def worker(a):
    import torch.distributed as dist
    from ias_nb.models import load_smollm2
    from ias_nb.alignment import text_losses
    if 'RANK' in os.environ: dist.init_process_group('gloo')
    rank = dist.get_rank() if dist.is_initialized() else 0
    model, tok = load_smollm2()
    model.eval()
    docs = documents(tok, a.n, a.length)
    names = linear_weights(model)
    g = torch.Generator().manual_seed(0)
    P = dict(model.named_parameters())
    q = {n: torch.randn(P[n].shape, generator=g) for n in names}
    before = rss_mb()
    if dist.is_initialized(): dist.barrier()
    t0 = time.perf_counter()
    if a.worker == 'ours':
        from ias_nb.corpus import document_scores
        s = document_scores(model, tok, docs, q, batch_size=a.batch, progress=False)
        extra = dict(checksum=float(s.sum()))
    elif a.worker == 'bare':
        from ias_nb.corpus import token_ids, rank_batches
        from ias_nb.steering import padded_batch, pad_id
        for p in model.parameters(): p.requires_grad_(False)
        for n in names: P[n].requires_grad_(True)
        ids = token_ids(tok, docs, None)
        pad = pad_id(tok)
        for b in rank_batches([len(x) for x in ids], a.batch):
            model.zero_grad(set_to_none=True)
            text_losses(model, padded_batch([ids[i] for i in b], pad)).sum().backward()
        extra = {}
    elif a.worker == 'kronfluence':
        from ias_nb.corpus import right_padded, RowsDataset, trim_padding
        from _kronfluence_peer import DocumentTask
        from kronfluence.analyzer import Analyzer, prepare_model
        from kronfluence.arguments import FactorArguments, ScoreArguments
        from kronfluence.utils.dataset import DataLoaderKwargs
        mods = [n[:-len('.weight')] for n in names]
        task = DocumentTask(mods)
        with tempfile.TemporaryDirectory() as out:
            an = Analyzer(analysis_name='tp', model=prepare_model(model, task), task=task, output_dir=out,
                          disable_tqdm=True, disable_model_save=True)
            an.set_dataloader_kwargs(DataLoaderKwargs(collate_fn=trim_padding))
            an.fit_all_factors(factors_name='id', dataset=RowsDataset(right_padded(tok, docs[:1])), per_device_batch_size=1,
                               factor_args=FactorArguments(strategy='identity'), overwrite_output_dir=True)
            before = rss_mb(); t0 = time.perf_counter()
            an.compute_pairwise_scores(scores_name='s', factors_name='id', query_dataset=RowsDataset(right_padded(tok, docs[:1])),
                                       train_dataset=RowsDataset(right_padded(tok, docs)), per_device_query_batch_size=1,
                                       per_device_train_batch_size=a.batch, score_args=ScoreArguments(), overwrite_output_dir=True)
        extra = {}
    sec = time.perf_counter() - t0
    peak = rss_mb() - before
    if dist.is_initialized():
        t = torch.tensor([sec, peak]); dist.all_reduce(t, op=dist.ReduceOp.MAX); sec, peak = t.tolist()
    if rank == 0:
        print('RESULT ' + json.dumps(dict(worker=a.worker, n=a.n, seconds=sec, docs_per_s=a.n / sec,
                                          peak_added_mb=peak, **extra)), flush=True)
    if dist.is_initialized(): dist.destroy_process_group()

def run(args, procs=1):
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore')
    if procs > 1: env['TP_ARGS'] = ' '.join(args)      # torchrun's own parser would take --n for --nnodes
    cmd = ([sys.executable, '-m', 'torch.distributed.run', '--standalone', f'--nproc_per_node={procs}', __file__] if procs > 1
           else [sys.executable, __file__] + args)
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    line = [l for l in out.stdout.splitlines() if l.startswith('RESULT ')]
    if not line: return dict(error=(out.stderr or out.stdout)[-600:])
    return json.loads(line[-1][7:])

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--worker'); ap.add_argument('--n', type=int, default=32); ap.add_argument('--length', type=int, default=32)
    ap.add_argument('--batch', type=int, default=8); ap.add_argument('--out', default='results/corpus_throughput.json')
    a = ap.parse_args(os.environ['TP_ARGS'].split() if 'TP_ARGS' in os.environ else None)  # torchrun: args by env
    if a.worker: return worker(a)
    base = ['--length', str(a.length), '--batch', str(a.batch)]
    plan = [('ours, 1 process', ['--worker', 'ours', '--n', str(a.n)], 1),
            ('bare forward + backward', ['--worker', 'bare', '--n', str(a.n)], 1),
            ('kronfluence pairwise (identity)', ['--worker', 'kronfluence', '--n', str(a.n)], 1),
            ('ours, 2 processes (torchrun)', ['--worker', 'ours', '--n', str(a.n)], 2),
            (f'ours, 1 process, 4N', ['--worker', 'ours', '--n', str(4 * a.n)], 1)]
    rows = []
    for name, args, procs in plan:
        r = run(args + base, procs); r['method'] = name; r['processes'] = procs; rows.append(r)
        print(name, r if 'error' in r else f"{r['docs_per_s']:.2f} docs/s, +{r['peak_added_mb']:.0f} MB", flush=True)
    ok = {r['method']: r for r in rows if 'error' not in r}
    bare = ok.get('bare forward + backward')
    cmd = 'OMP_NUM_THREADS=1 PYTHONPATH=. python ' + ' '.join(sys.argv)
    print(f"\n{cmd}\nSmolLM2-135M, N = {a.n} documents × {a.length} tokens, batch {a.batch}, query on {210} linear layers, 1 thread per process")
    print(f"{'run':34} {'docs':>5} {'seconds':>8} {'docs/s':>8} {'÷ bare':>7} {'peak +MB':>9}")
    for r in rows:
        if 'error' in r: print(f"{r['method']:34} failed: {r['error'][-200:]}"); continue
        ratio = r['docs_per_s'] / bare['docs_per_s'] if bare else float('nan')
        print(f"{r['method']:34} {r['n']:5d} {r['seconds']:8.1f} {r['docs_per_s']:8.2f} {ratio:7.2f} {r['peak_added_mb']:9.0f}")
    summary = {}
    if bare and 'ours, 1 process' in ok:
        summary['throughput_ratio_vs_bare'] = ok['ours, 1 process']['docs_per_s'] / bare['docs_per_s']
    if 'ours, 1 process' in ok and 'ours, 1 process, 4N' in ok:
        summary['peak_memory_ratio_4N_vs_N'] = ok['ours, 1 process, 4N']['peak_added_mb'] / max(ok['ours, 1 process']['peak_added_mb'], 1)
    if 'ours, 2 processes (torchrun)' in ok and 'ours, 1 process' in ok:
        summary['speedup_2_vs_1_process'] = ok['ours, 2 processes (torchrun)']['docs_per_s'] / ok['ours, 1 process']['docs_per_s']
    print(summary)
    Path(a.out).parent.mkdir(exist_ok=True, parents=True)
    json.dump(dict(command=cmd, sizes=dict(N=a.n, length=a.length, batch=a.batch), rows=rows, summary=summary), open(a.out, 'w'), indent=1)

if __name__ == '__main__': main()
