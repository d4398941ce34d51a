"""The README's end-to-end case: fine-tune a model on a corpus with planted concepts, save it, index the corpus once,
then trace several steers — each built from contrast pairs that share no sentence with the corpus — against that one
index with `ias attribute`'s default method for an index (the contrast of the vector's pairs), beside chance and the
activation (hidden-state cosine) baseline.

    OMP_NUM_THREADS=1 python examples/planted_index.py [--work ias-out/planted_index] [--out WORK/steers_from_index.json]
    OMP_NUM_THREADS=1 python examples/planted_index.py --quick   # QUICK sizes, everything under ias-out/planted_index_quick

The corpus and concepts are `bench/planted.py`'s (150 Python help paragraphs + 4 concepts × 32 documents,
`ias_nb/data/planted_concepts.json`) and so is the fine-tune (the tiny GPT-2, 60 AdamW steps, lr 1e-3, batch 8,
seed 0). The model is saved with `save_pretrained`, so every step after it is a plain `ias` command on the saved
folder; they run in this process through `ias_nb.cli.main` and are recorded as the commands to type. For each concept:
the index's default method against the index (no pass over the corpus), the same method by an exact corpus pass,
and `--method cosine` (the baseline reads activations, so it takes the corpus; it is the default with --corpus).
Precision@32 = the share of the top 32 documents that carry the concept (32 per concept, chance 32/278), with Clopper–Pearson 95% intervals. A few minutes
on a CPU. Writes steers_from_index.json in the work folder (the committed results/steers_from_index.json was written
with --out results/steers_from_index.json); the work folder (model, corpus, index, each run's attribution.json) stays.
--quick: 2 concepts × 8 documents among 8 background paragraphs, one fine-tuning step, a 4-dimensional index and the
top 8, all under ias-out/planted_index_quick: the script runs, its precisions mean nothing.
"""
import argparse, contextlib, io, json, sys, time
from pathlib import Path
import torch
from scipy.stats import binomtest
from ias_nb.corpus import planted_concepts, planted_corpus, python_doc_paragraphs, finetune, default_attribution
from ias_nb.models import load_tiny_gpt2
from ias_nb.cli import main as ias

QUICK = dict(work=Path('ias-out/planted_index_quick'), background=8, steps=1, dims='4', top=8, concepts=2, per_concept=8)

def chosen_concepts(n:int=None, per_concept:int=None) -> dict:
    "The first `n` shipped planted concepts (all: None), each with its first `per_concept` documents."
    return {k: c | dict(documents=c['documents'][:per_concept]) for k, c in list(planted_concepts().items())[:n]}

def write_inputs(work:Path, background:int, concepts:dict=None) -> tuple:
    "The planted corpus as corpus.jsonl (documents may span lines), each concept's pairs as two .txt files; (docs, labels)."
    concepts = concepts or planted_concepts()
    docs, labels = planted_corpus(concepts, python_doc_paragraphs(background), seed=0)
    (work / 'corpus.jsonl').write_text(''.join(json.dumps(dict(text=d)) + '\n' for d in docs), encoding='utf-8')
    for name, c in concepts.items():
        for side in ('positive', 'negative'):
            (work / f'{name}_{side}.txt').write_text('\n'.join(c[side]) + '\n', encoding='utf-8')
    return docs, labels

def fine_tune_and_save(work:Path, docs:list, steps:int, lr:float, seed:int) -> Path:
    "The tiny GPT-2 fine-tuned on the corpus (AdamW), saved with its tokenizer to work/model."
    base, tok = load_tiny_gpt2(progress=False)
    tuned = finetune(base, tok, docs, steps=steps, lr=lr, optimizer='adamw', seed=seed, batch_size=8)
    tuned.save_pretrained(work / 'model'); tok.save_pretrained(work / 'model')
    return work / 'model'

def run(argv:list) -> tuple:
    "`ias ARGV` in this process: (seconds, printed output)."
    t = time.time()
    with contextlib.redirect_stdout(io.StringIO()) as s: ias(argv)
    return time.time() - t, s.getvalue()

def precision(top:list, labels:list, concept:str) -> dict:
    "Hits of the concept among the listed top documents, their share and its Clopper–Pearson 95% interval."
    hits = sum(labels[r['index']] == concept for r in top); ci = binomtest(hits, len(top)).proportion_ci()
    return dict(hits=hits, precision=hits / len(top), low=ci.low, high=ci.high)

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--work', type=Path, default=Path('ias-out/planted_index'))
    p.add_argument('--out', type=Path, default=None, help='the JSON (default: steers_from_index.json in --work)')
    p.add_argument('--background', type=int, default=150); p.add_argument('--steps', type=int, default=60)
    p.add_argument('--lr', type=float, default=1e-3); p.add_argument('--seed', type=int, default=0)
    p.add_argument('--dims', default='16', help="`ias index build --dims`")
    p.add_argument('--top', type=int, default=32, help='documents listed per steer (precision@top)')
    p.add_argument('--concepts', type=int, default=None, help='the first N planted concepts (default: all 4)')
    p.add_argument('--per-concept', type=int, default=None, help="each concept's first N documents (default: all 32)")
    p.add_argument('--quick', action='store_true', help='the smallest sizes (QUICK), everything under ias-out/planted_index_quick')
    if '--quick' in sys.argv[1:]: p.set_defaults(**QUICK)
    a = p.parse_args(); t0 = time.time(); torch.set_num_threads(1)
    a.out = a.out or a.work / 'steers_from_index.json'
    a.work.mkdir(parents=True, exist_ok=True); a.out.parent.mkdir(parents=True, exist_ok=True); w = a.work
    concepts = chosen_concepts(a.concepts, a.per_concept)
    docs, labels = write_inputs(w, a.background, concepts)
    t1 = time.time(); model = fine_tune_and_save(w, docs, a.steps, a.lr, a.seed); finetune_s = time.time() - t1
    print(f"fine-tuned and saved to {model} in {finetune_s:.0f} s", flush=True)
    build = ['index', 'build', '--model', str(model), '--corpus', str(w / 'corpus.jsonl'), '--dims', a.dims,
             '--out', str(w / 'index')]
    build_s, printed = run(build); print(printed.strip().splitlines()[-1], f'({build_s:.0f} s)', flush=True)
    rows, commands = [], dict(build='ias ' + ' '.join(build))
    for name in concepts:
        vec = f"caa:{w / f'{name}_positive.txt'},{w / f'{name}_negative.txt'}"
        common = ['attribute', '--model', str(model), '--layer', '2', '--vector', vec, '--top', str(a.top)]
        method = ['--method', default_attribution(texts=False)]   # the index's default, named for the exact pass too
        runs = dict(index=common + method + ['--index', str(w / 'index'), '--out', str(w / name / 'index')],
                    exact=common + method + ['--precondition', 'identity', '--corpus', str(w / 'corpus.jsonl'),
                                             '--out', str(w / name / 'exact')],   # the index's (H + λI)⁻¹
                    cosine=common + ['--corpus', str(w / 'corpus.jsonl'), '--method', 'cosine',
                                     '--out', str(w / name / 'cosine')])
        row = dict(concept=name, chance=labels.count(name) / len(docs))
        for kind, argv in runs.items():
            s, _ = run(argv); got = json.loads((w / name / kind / 'attribution.json').read_text())
            row[kind] = precision(got['top'], labels, name) | dict(method=got['method'], seconds=s)
            commands.setdefault(kind, 'ias ' + ' '.join(argv).replace(name, '{concept}'))
        rows.append(row)
        print(f"{name:>10}: " + '   '.join(f"{k} ({row[k]['method']}) {row[k]['hits']}/{a.top}" for k in runs)
              + f"   chance {row['chance'] * a.top:.1f}/{a.top}", flush=True)
    mean = {k: sum(r[k]['precision'] for r in rows) / len(rows) for k in ('index', 'exact', 'cosine')}
    res = dict(settings=dict(command='python examples/planted_index.py' + (' --quick' if a.quick else ''), model='tiny-gpt2',
                             layer='transformer.h.2', top=a.top, concepts=list(concepts),
                             n_documents=len(docs), background=a.background, steps=a.steps, lr=a.lr, seed=a.seed,
                             dims=a.dims, default_method=default_attribution(texts=False), commands=commands),
               timing=dict(finetune_s=finetune_s, build_s=build_s,
                           index_query_s=[r['index']['seconds'] for r in rows], total_s=time.time() - t0),
               rows=rows, mean_precision=mean)
    a.out.write_text(json.dumps(res, indent=1))
    print(f'mean precision@{a.top}: ' + ', '.join(f'{k} {v:.2f}' for k, v in mean.items())
          + f"; chance {rows[0]['chance']:.2f}; {time.time() - t0:.0f} s; written to {a.out}")

if __name__ == '__main__':
    main()
