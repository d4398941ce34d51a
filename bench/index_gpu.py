"""Prepared GPU run of the gradient index (chapter 12) — NOT run yet: no GPU was lent to the task that wrote it.
Index N documents for SmolLM2-135M on one GPU and report documents/s, the hours 10⁶ documents take, bytes per
document, the agreement of the index with the exact scores on the first documents, and the query latency.

    # on a machine with one GPU (the device tool's 10-minute limit per command: N = 50,000 measures the rate)
    PYTHONPATH=. python bench/index_gpu.py --n 50000 --out "$OUT/index_gpu.json"
    # the full run (about an hour if the rate holds; resumable: run it again and it continues)
    PYTHONPATH=. python bench/index_gpu.py --n 1000000 --folder /scratch/smollm2-index --out results/index_gpu.json

Documents: text that ships offline (Python's help text: its paragraphs and sentences, ≤ 64 tokens), repeated to N —
it serves for throughput (agreement is measured on the first, distinct, documents). Index: every nn.Linear of the 30
blocks (210 layers), k = 8 per side, float16 rows: 210 · 64 = 13,440 values, 26,880 bytes per document (27 GB at 10⁶).
"""
import argparse, json, re, sys, time, tempfile
from pathlib import Path
import torch

def documents(tok, n:int) -> list:
    "n documents: Python's help text paragraphs and sentences (≤ 64 tokens), repeated."
    from ias_nb.models import python_help_text
    from ias_nb.corpus import python_doc_paragraphs
    found = dict.fromkeys(python_doc_paragraphs(695) + [s.strip() for s in re.split(r'(?<=[.!?])\s+',
                                                         ' '.join(python_help_text().split()))])
    keep = [s for s in found if len(s.split()) >= 8 and s[0].isalpha() and len(tok(s)['input_ids']) <= 64]
    return (keep * (n // len(keep) + 1))[:n]

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--n', type=int, default=50_000)
    ap.add_argument('--dims', type=int, default=8)
    ap.add_argument('--batch-size', type=int, default=64)
    ap.add_argument('--folder', help='index folder (default: a temporary folder, deleted)')
    ap.add_argument('--out', default='results/index_gpu.json')
    a = ap.parse_args()
    from scipy.stats import spearmanr
    from ias_nb.models import load_smollm2
    from ias_nb.corpus import document_scores
    from ias_nb.index import build_index
    assert torch.cuda.is_available(), "this run needs a GPU"
    model, tok = load_smollm2(device='cuda')
    docs = documents(tok, a.n)
    folder = Path(a.folder or tempfile.mkdtemp()) / 'index'
    torch.cuda.synchronize(); t0 = time.perf_counter()
    ix = build_index(model, tok, docs, folder, dims=a.dims, batch_size=a.batch_size, shard_size=8192, progress=True)
    torch.cuda.synchronize(); build_s = time.perf_counter() - t0
    # agreement on the first 512 (distinct) documents: a random query on the indexed weights, exact vs index
    g = torch.Generator().manual_seed(0); named = dict(model.named_parameters())
    q = {n: torch.randn(named[n].shape, generator=g).cuda() for n in ix.params}
    exact = document_scores(model, tok, docs[:512], q, batch_size=a.batch_size, progress=False).cpu()
    got = ix.scores(model, {n: t.cpu() for n, t in q.items()})[:512]
    t1 = time.perf_counter(); v, i = ix.top(model, {n: t.cpu() for n, t in q.items()}, 50); query_s = time.perf_counter() - t1
    res = dict(device=torch.cuda.get_device_name(), n_documents=a.n, dims=a.dims, layers=len(ix.specs), width=ix.width,
               bytes_per_doc=2 * ix.width, build_seconds=build_s, docs_per_s=a.n / build_s,
               hours_for_1e6=1e6 / (a.n / build_s) / 3600, spearman_first_512=float(spearmanr(got, exact)[0]),
               top50_query_seconds_incl_model_check=query_s, command='PYTHONPATH=. python ' + ' '.join(sys.argv))
    print(json.dumps(res, indent=1))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True); Path(a.out).write_text(json.dumps(res, indent=1))

if __name__ == '__main__': main()
