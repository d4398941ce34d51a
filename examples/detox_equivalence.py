"""Full runs of the paper's experiments (a) detoxification and (b) first-order equivalence on SmolLM2-135M.

    OMP_NUM_THREADS=1 python examples/detox_equivalence.py --out results

One CG solve (the detox update Δθ) and one IAS solve (its vector s*) are shared by both experiments (`--vectors FILE`
caches them, so that `--only detox` and `--only equivalence` can run as two processes); each experiment writes
`<out>/detox.json|png` or `<out>/equivalence.json|png` with its settings, the command and the wall times.
"""
import argparse, time, torch
from pathlib import Path
from ias_nb.models import load_causal_lm
from ias_nb.experiments import detox_vectors, detox_experiment, equivalence_experiment, DetoxVectors, Update
from ias_nb.steering import SteeringVector

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument('--model', default='smollm2'); p.add_argument('--out', default='results')
p.add_argument('--layer', default=0.5, type=float, help='relative depth of the steering block')
p.add_argument('--n', default=40, type=int, help='evaluation prompts of the detox experiment')
p.add_argument('--alphas', default='0.5,1,2', help='steering strengths')
p.add_argument('--n-heldout', default=16, type=int, help='held-out prompts B of the equivalence experiment')
p.add_argument('--probes', default=4, type=int, help='probe prompts A of the IAS vector')
p.add_argument('--curvature-pairs', default=2, type=int, help='contrast pairs whose sentences are the GGN corpus')
p.add_argument('--pairs', default=16, type=int, help='contrast pairs re-weighted by the update')
p.add_argument('--max-new-tokens', default=10, type=int); p.add_argument('--ppl-tokens', default=256, type=int)
p.add_argument('--only', choices=['detox', 'equivalence'], help='run one experiment (default: both)')
p.add_argument('--vectors', type=Path, help='cache of the update and the vectors (written if absent, else read)')
args = p.parse_args()
command = 'OMP_NUM_THREADS=1 python examples/detox_equivalence.py --out results'
t0 = time.time()
model, tok = load_causal_lm(args.model)
if args.vectors and args.vectors.exists():
    c = torch.load(args.vectors, weights_only=False)
    v = DetoxVectors(c['layer'], Update(c['update'], c['info']), c['caa'], SteeringVector(c['s'], c['model'], c['layer'], 'ias', meta=c['meta']), c['probes'])
    vectors_s = c['seconds']
else:
    v = detox_vectors(model, tok, args.layer, n_probes=args.probes, maxiter=200, pairs=args.pairs, curvature_pairs=args.curvature_pairs)
    vectors_s = time.time() - t0
    if args.vectors: torch.save(dict(layer=v.layer, update=dict(v.update), info=v.update.info, caa=v.caa, s=v.ias.vector, model=v.ias.model,
                                     meta=v.ias.meta, probes=v.probes, seconds=vectors_s), args.vectors)
print(v.settings(), f'\nvectors: {vectors_s:.0f} s', flush=True)
runs = dict(equivalence=lambda: equivalence_experiment(model, tok, args.layer, n_heldout=args.n_heldout, vectors=v),
            detox=lambda: detox_experiment(model, tok, args.layer, n=args.n, alphas=[float(a) for a in args.alphas.split(',')], max_new_tokens=args.max_new_tokens, ppl_tokens=args.ppl_tokens, vectors=v))
for name in ([args.only] if args.only else runs):
    e = runs[name]()
    e.settings |= dict(command=command + (f' --only {name}' if args.only else ''), vectors_wall_s=vectors_s, device=f'CPU, {torch.get_num_threads()} torch thread(s)')
    print(e.markdown(), f"\n{e.name}: {e.settings['wall_s']:.0f} s", flush=True)
    e.save(args.out)
print(f'total {time.time() - t0:.0f} s')
