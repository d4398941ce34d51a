"""Planted-concept benchmark: does a steer built from the user's own prompts find the documents that carry its concept?

Four concepts (hostility, the sea, archaic English, cooking; `ias_nb/data/planted_concepts.json`), 32 documents each,
planted among paragraphs of Python's help text; the model fine-tuned on the whole corpus (AdamW); each concept's vector the
CAA vector of its 10 contrast pairs (no sentence shared with the corpus). Every gradient method reads one
`document_scores` pass (all concepts' queries stacked, identity and EK-FAC preconditioners); the two activation
baselines are the hidden-state cosine and persona vectors' projection difference. Writes results/planted_<model>.json
(per concept × seed rows, summary with bootstrap intervals) and per-document scores for the chapter's figure.
The JSON is rewritten after every seed; a rerun with the same settings skips the seeds already there (`--fresh` to redo).

    python bench/planted.py --model tiny-gpt2 --seeds 2 --ekfac
    python bench/planted.py --model smollm2 --seeds 1 --background 60 --blocks 16 --layer 15 --steps 30 --lr 3e-4 --k 4 --k-param 8
"""
import argparse, json, sys, time
from pathlib import Path
import numpy as np, torch
from ias_nb.corpus import (python_doc_paragraphs, finetune, precision_at_k, identity_preconditioner,
                           ekfac_preconditioner, conv1d_as_linear, mean_ci, planted_concepts, planted_corpus,
                           average_precision, influence_queries, random_queries, split_scores, document_scores,
                           rho_scores, l1_scores, unit_scores, logit_norm_scores, deflated_scores, hidden_cosines,
                           projection_difference)
from ias_nb.steering import caa_vector
from ias_nb.experiments import prompt_set

def method_scores(si, si_c):
    "All gradient methods from an identity pass `si` and a curvature pass `si_c` (None: skipped)."
    out = dict(rho=rho_scores(si), l1=l1_scores(si), contrast=si.contrast, unit=unit_scores(si),
               logit_norm=logit_norm_scores(si), deflated=deflated_scores(si, 1), deflated3=deflated_scores(si, 3))
    if si_c is not None:
        out |= dict(rho_ekfac=rho_scores(si_c), contrast_ekfac=si_c.contrast, unit_ekfac=unit_scores(si_c),
                    logit_norm_ekfac=logit_norm_scores(si_c), deflated_ekfac=deflated_scores(si_c, 1))
    return out

def main(a):
    t0 = time.time(); torch.set_num_threads(a.threads)
    concepts = planted_concepts()
    docs, labels = planted_corpus(concepts, python_doc_paragraphs(a.background), seed=0)
    probes = prompt_set('eval_prompts')[:a.probes]
    if a.model == 'tiny-gpt2':
        from ias_nb.models import load_tiny_gpt2
        base, tok = load_tiny_gpt2(progress=False); base = conv1d_as_linear(base)
        layer = 'transformer.h.2'
        params = [n for n, _ in base.named_parameters() if n.startswith('transformer.h.') and ('.attn.' in n or '.mlp.' in n)]
        trainable = None
    else:
        from ias_nb.models import load_smollm2
        base, tok = load_smollm2()
        L = base.config.num_hidden_layers; layer = f'model.layers.{a.layer if a.layer is not None else L // 2}'
        blocks = [int(b) for b in a.blocks.split(',')]
        params = [n for n, _ in base.named_parameters() if any(n.startswith(f'model.layers.{b}.mlp.') for b in blocks)]
        trainable = params
    rows, timing, figure_data = resume(a, layer)
    for seed in range(a.seeds):
        if any(r['seed'] == seed for r in rows): print(f'seed {seed}: done in {a.out}, skipped', flush=True); continue
        t1 = time.time()
        if trainable is not None:
            for n, p in base.named_parameters(): p.requires_grad_(n in trainable)
        tuned = finetune(base, tok, docs, steps=a.steps, lr=a.lr, optimizer='adamw', seed=seed, batch_size=8)
        timing.setdefault('finetune_s', []).append(time.time() - t1); print(f'seed {seed}: fine-tuned in {time.time() - t1:.0f} s', flush=True)
        t1 = time.time()
        ek = ekfac_preconditioner(tuned, tok, docs, a.damping, modules=sorted({n.rsplit('.', 1)[0] for n in params}),
                                  batch_size=8) if a.ekfac else None
        timing.setdefault('ekfac_s', []).append(time.time() - t1); print(f'  EK-FAC factors in {time.time() - t1:.0f} s', flush=True)
        t1 = time.time(); queries, parts, vectors = [], [], {}
        for name, c in concepts.items():
            s = vectors[name] = caa_vector(tuned, tok, layer, c['positive'], c['negative'])
            for P in [identity_preconditioner(a.damping)] + ([ek] if ek else []):
                q, St = influence_queries(tuned, tok, layer, s, probes, P, params, k=a.k, positive=c['positive'],
                                          negative=c['negative'], seed=seed)
                parts.append((name, len(queries), len(q), St)); queries += q
        n_q = len(queries); queries += random_queries(tuned, params, a.k_param, seed)
        timing.setdefault('queries_s', []).append(time.time() - t1); print(f'  {n_q} queries in {time.time() - t1:.0f} s', flush=True)
        t1 = time.time()
        X = document_scores(tuned, tok, docs, queries, batch_size=8).cpu()
        timing.setdefault('scores_s', []).append(time.time() - t1); print(f'  {len(queries)} x {len(docs)} scores in {time.time() - t1:.0f} s', flush=True)
        RG = X[n_q:]
        t1 = time.time(); V = torch.stack([vectors[name] for name in concepts])   # all concepts in one pass each
        cos = dict(zip(concepts, hidden_cosines(tuned, tok, layer, docs, V)))
        pd = dict(zip(concepts, projection_difference(tuned, tok, layer, docs, V, generator=base)))
        timing.setdefault('baselines_s', []).append(time.time() - t1); print(f'  baselines in {time.time() - t1:.0f} s', flush=True)
        for name in concepts:
            sis = [split_scores(X[o:o + n], St, True, RG) for nm, o, n, St in parts if nm == name]
            sc = method_scores(sis[0], sis[1] if len(sis) > 1 else None)
            sc['cosine'], sc['projection_difference'] = cos[name], pd[name]
            rel = torch.tensor([l == name for l in labels]); K = int(rel.sum())
            for m, v in sc.items():
                rows.append(dict(model=a.model, seed=seed, concept=name, method=m, k=K,
                                 precision=precision_at_k(v, rel, K), ap=average_precision(v, rel),
                                 chance=rel.double().mean().item()))
            print(f'  {name}: ' + '  '.join(f"{r['method']} {r['precision']:.2f}" for r in rows
                                              if r['seed'] == seed and r['concept'] == name), flush=True)
        if seed == 0:
            figure_data = {name: dict(rho=rho_scores(split_scores(X[o:o + n], St, True, RG)).tolist(),
                                      deflated=deflated_scores(split_scores(X[o:o + n], St, True, RG)).tolist(),
                                      cosine=cos[name].tolist()) for name, o, n, St in parts[::2 if a.ekfac else 1]}
        write(a, rows, timing, t0, layer, docs, base, params, labels, figure_data)

SAME = ('model', 'background', 'probes', 'steps', 'lr', 'damping', 'k', 'k_param', 'ekfac', 'blocks', 'layer')

def resume(a, layer: str) -> tuple:
    "Rows, per-seed timings and figure data of the seeds already in `a.out` if its settings match (else a fresh start)."
    if a.fresh or not Path(a.out).exists(): return [], {}, None
    old = json.loads(Path(a.out).read_text())
    diff = [k for k in SAME if old['settings'].get(k) != (vars(a) | dict(layer=layer)).get(k)]
    if diff: raise SystemExit(f'{a.out} was run with other settings ({", ".join(diff)}): pass --fresh to overwrite it, or --out elsewhere')
    timing = old.get('timing_per_seed') or {k: [v] for k, v in old['timing'].items() if k != 'total_s'}
    a.note = a.note or old['settings'].get('note', '')             # the note travels with the seeds it describes
    print(f"resuming: seeds {sorted({r['seed'] for r in old['rows']})} read from {a.out}", flush=True)
    return old['rows'], timing, old['figure']

def write(a, rows, timing, t0, layer, docs, base, params, labels, figure_data):
    "Summarise the rows so far (bootstrap over concept × seed) and write the JSON."
    methods = list(dict.fromkeys(r['method'] for r in rows))
    summary = {}
    for m in methods:
        p = np.array([r['precision'] for r in rows if r['method'] == m]); ap = np.array([r['ap'] for r in rows if r['method'] == m])
        ci = lambda x: (float(x.mean()),) * 3 if np.ptp(x) == 0 else mean_ci(x)   # BCa needs spread
        summary[m] = dict(precision=ci(p), ap=ci(ap))
    res = dict(settings=vars(a) | dict(layer=layer, completed_seeds=sorted({r['seed'] for r in rows}), n_documents=len(docs), n_params=sum(dict(base.named_parameters())[n].numel() for n in params),
                                       command='python bench/planted.py ' + ' '.join(sys.argv[1:])),
               timing={k: float(np.mean(v)) for k, v in timing.items()} | dict(total_s=time.time() - t0),
               timing_per_seed=timing,
               summary=summary, rows=rows, labels=labels, figure=figure_data)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=1))
    for m, s in summary.items(): print(f"{m:>22}: precision@k {s['precision'][0]:.3f} [{s['precision'][1]:.3f}, {s['precision'][2]:.3f}]   AP {s['ap'][0]:.3f}")
    print(f'{time.time() - t0:.0f} s', flush=True)

if __name__ == '__main__':
    p = argparse.ArgumentParser()
    p.add_argument('--model', default='tiny-gpt2'); p.add_argument('--seeds', type=int, default=2)
    p.add_argument('--background', type=int, default=150)
    p.add_argument('--probes', type=int, default=16); p.add_argument('--steps', type=int, default=60)
    p.add_argument('--lr', type=float, default=1e-3); p.add_argument('--damping', type=float, default=1.0)
    p.add_argument('--k', type=int, default=8); p.add_argument('--k-param', type=int, default=16)
    p.add_argument('--note', default='', help='a sentence kept in the JSON settings (on resume: the stored one unless given)')
    p.add_argument('--ekfac', action='store_true'); p.add_argument('--blocks', default='16', help='smollm2: blocks whose MLP is fine-tuned and scored')
    p.add_argument('--layer', type=int, default=None, help='smollm2: steered block (default: the middle one)')
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--fresh', action='store_true', help='ignore the seeds already saved in --out')
    p.add_argument('--out', default=None, help='default: results/planted_<model>.json')
    a = p.parse_args(); a.out = a.out or f'results/planted_{a.model}.json'
    main(a)
