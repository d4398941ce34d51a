"""The README's end-to-end case: fine-tune a model on a corpus with planted concepts, save it, index the corpus once,
then trace several steers — each built from contrast pairs that share no sentence with the corpus — against that one
index with `ias attribute`'s default method for an index (the contrast of the vector's pairs), beside chance and the
activation (hidden-state cosine) baseline.

    OMP_NUM_THREADS=1 python examples/planted_index.py [--work ias-out/planted_index] [--out results/steers_from_index.json]

The corpus and concepts are `bench/planted.py`'s (150 Python help paragraphs + 4 concepts × 32 documents,
`ias_nb/data/planted_concepts.json`) and so is the fine-tune (the tiny GPT-2, 60 AdamW steps, lr 1e-3, batch 8,
seed 0). The model is saved with `save_pretrained`, so every step after it is a plain `ias` command on the saved
folder; they run in this process through `ias_nb.cli.main` and are recorded as the commands to type. For each concept:
the index's default method against the index (no pass over the corpus), the same method by an exact corpus pass,
and `--method cosine` (the baseline reads activations, so it takes the corpus; it is the default with --corpus).
Precision@32 = the share of the top 32 documents that carry the concept (32 per concept, chance 32/278), with Clopper–Pearson 95% intervals. A few minutes
on a CPU. Writes results/steers_from_index.json; the work folder (model, corpus, index, each run's attribution.json) stays.
"""
import argparse, contextlib, io, json, time
from pathlib import Path
import torch
from scipy.stats import binomtest
from ias_nb.corpus import planted_concepts, planted_corpus, python_doc_paragraphs, finetune, default_attribution
from ias_nb.models import load_tiny_gpt2
from ias_nb.cli import main as ias

def write_inputs(work:Path, background:int) -> tuple:
    "The planted corpus as corpus.jsonl (documents may span lines), each concept's pairs as two .txt files; (docs, labels)."
    concepts = planted_concepts()
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
    p.add_argument('--out', type=Path, default=Path('results/steers_from_index.json'))
    p.add_argument('--background', type=int, default=150); p.add_argument('--steps', type=int, default=60)
    p.add_argument('--lr', type=float, default=1e-3); p.add_argument('--seed', type=int, default=0)
    p.add_argument('--dims', default='16', help="`ias index build --dims`")
    a = p.parse_args(); t0 = time.time(); torch.set_num_threads(1)
    a.work.mkdir(parents=True, exist_ok=True); w = a.work
    docs, labels = write_inputs(w, a.background)
    t1 = time.time(); model = fine_tune_and_save(w, docs, a.steps, a.lr, a.seed); finetune_s = time.time() - t1
    print(f"fine-tuned and saved to {model} in {finetune_s:.0f} s", flush=True)
    build = ['index', 'build', '--model', str(model), '--corpus', str(w / 'corpus.jsonl'), '--dims', a.dims,
             '--out', str(w / 'index')]
    build_s, printed = run(build); print(printed.strip().splitlines()[-1], f'({build_s:.0f} s)', flush=True)
    rows, commands = [], dict(build='ias ' + ' '.join(build))
    for name in planted_concepts():
        vec = f"caa:{w / f'{name}_positive.txt'},{w / f'{name}_negative.txt'}"
        common = ['attribute', '--model', str(model), '--layer', '2', '--vector', vec, '--top', '32']
        method = ['--method', default_attribution(texts=False)]   # the index's default, named for the exact pass too
        runs = dict(index=common + method + ['--index', str(w / 'index'), '--out', str(w / name / 'index')],
                    exact=common + method + ['--corpus', str(w / 'corpus.jsonl'), '--out', str(w / name / 'exact')],
                    cosine=common + ['--corpus', str(w / 'corpus.jsonl'), '--method', 'cosine',
                                     '--out', str(w / name / 'cosine')])
        row = dict(concept=name, chance=labels.count(name) / len(docs))
        for kind, argv in runs.items():
            s, _ = run(argv); got = json.loads((w / name / kind / 'attribution.json').read_text())
            row[kind] = precision(got['top'], labels, name) | dict(method=got['method'], seconds=s)
            commands.setdefault(kind, 'ias ' + ' '.join(argv).replace(name, '{concept}'))
        rows.append(row)
        print(f"{name:>10}: " + '   '.join(f"{k} ({row[k]['method']}) {row[k]['hits']}/32" for k in runs)
              + f"   chance {row['chance'] * 32:.1f}/32", flush=True)
    mean = {k: sum(r[k]['precision'] for r in rows) / len(rows) for k in ('index', 'exact', 'cosine')}
    res = dict(settings=dict(command='python examples/planted_index.py', model='tiny-gpt2', layer='transformer.h.2',
                             n_documents=len(docs), background=a.background, steps=a.steps, lr=a.lr, seed=a.seed,
                             dims=a.dims, default_method=default_attribution(texts=False), commands=commands),
               timing=dict(finetune_s=finetune_s, build_s=build_s,
                           index_query_s=[r['index']['seconds'] for r in rows], total_s=time.time() - t0),
               rows=rows, mean_precision=mean)
    a.out.parent.mkdir(parents=True, exist_ok=True); a.out.write_text(json.dumps(res, indent=1))
    print('mean precision@32: ' + ', '.join(f'{k} {v:.2f}' for k, v in mean.items())
          + f"; chance {rows[0]['chance']:.2f}; {time.time() - t0:.0f} s; written to {a.out}")

if __name__ == '__main__':
    main()
