"""Full runs of the paper's experiments (a) detoxification and (b) first-order equivalence on SmolLM2-135M.

    OMP_NUM_THREADS=1 python examples/detox_equivalence.py --out results --vectors /tmp/detox_vectors.pt
    OMP_NUM_THREADS=1 python examples/detox_equivalence.py --quick   # tiny GPT-2, smallest sizes, ias-out/detox_equivalence_quick

One CG solve (the detox update Δθ of every block's MLP output projection, from the same contrast pairs as the CAA
vector) and one IAS solve per update scope (all blocks, other blocks, the steered block) are shared by both
experiments (`--vectors FILE` caches them, so that `--only detox` and `--only equivalence` can run as two
processes); each experiment writes `<out>/detox.json|png` or `<out>/equivalence.json|png` with its settings, the
command and the wall times. --quick runs both on the tiny GPT-2 at the smallest sizes (QUICK; any flag given
overrides it) into ias-out/detox_equivalence_quick: the script runs, not the figures.
"""
import argparse, sys, time, torch
from pathlib import Path
from ias_nb.models import load_causal_lm
from ias_nb.experiments import (detox_vectors, detox_experiment, equivalence_experiment, DetoxVectors, Update,
                                 FULL_VECTORS as F)
from ias_nb.steering import SteeringVector

QUICK = dict(model='tiny-gpt2', out='ias-out/detox_equivalence_quick', n=2, alphas='1', random_alphas='1', n_random=2,
             eq_random=2, n_heldout=2, probes=2, pairs=4, curvature_pairs=2, lsqr_iters=5, max_new_tokens=4)
p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument('--model', default='smollm2'); p.add_argument('--out', default='ias-out')
p.add_argument('--layer', default=0.5, type=float, help='relative depth of the steering block')
p.add_argument('--n', default=120, type=int, help='evaluation prompts of the detox experiment (12 subjects × 10 stems)')
p.add_argument('--alphas', default='0.25,0.5,0.75,1,1.5,2,3', help='steering strengths of CAA and IAS')
p.add_argument('--random-alphas', default='1,2', help='steering strengths of the random directions')
p.add_argument('--n-random', default=20, type=int, help='random directions of the detox experiment')
p.add_argument('--eq-random', default=100, type=int, help='random directions of the equivalence experiment')
p.add_argument('--n-heldout', default=32, type=int, help='held-out prompts B of the equivalence experiment')
p.add_argument('--probes', default=F['n_probes'], type=int, help='probe prompts A of the IAS vector')
p.add_argument('--pairs', default=F['pairs'], type=int, help='contrast pairs of the update and of the CAA vector')
p.add_argument('--curvature-pairs', default=F['curvature_pairs'], type=int, help="contrast pairs in the GGN corpus (with the held-out text)")
p.add_argument('--cg-tol', default=F['tol'], type=float); p.add_argument('--lsqr-iters', default=F['maxiter'], type=int)
p.add_argument('--max-new-tokens', default=10, type=int)
p.add_argument('--only', choices=['detox', 'equivalence'], help='run one experiment (default: both)')
p.add_argument('--vectors', type=Path, help='cache of the update and the vectors (written if absent, else read)')
p.add_argument('--quick', action='store_true', help='tiny GPT-2 at the smallest sizes into ias-out/detox_equivalence_quick')
if '--quick' in sys.argv[1:]: p.set_defaults(**QUICK)
args = p.parse_args()
# every output folder exists before the long work (the vectors alone take about 45 min on SmolLM2)
for folder in [Path(args.out)] + ([args.vectors.parent] if args.vectors else []): folder.mkdir(parents=True, exist_ok=True)
command = 'OMP_NUM_THREADS=1 python examples/detox_equivalence.py ' + ' '.join(sys.argv[1:])
t0 = time.time()
model, tok = load_causal_lm(args.model)
sv = lambda d: SteeringVector(d['vector'], d['model'], d['layer'], 'ias', meta=d['meta'])
if args.vectors and args.vectors.exists():
    c = torch.load(args.vectors, weights_only=False)
    scopes = {k: (Update(u, i), sv(s)) for k, (u, i, s) in c['scopes'].items()}
    v = DetoxVectors(c['layer'], Update(c['update'], c['info']), c['caa'], scopes['all blocks'][1], c['probes'], scopes)
    vectors_s = c['seconds']
else:
    v = detox_vectors(model, tok, args.layer, **(F | dict(n_probes=args.probes, maxiter=args.lsqr_iters, pairs=args.pairs,
                                                         curvature_pairs=args.curvature_pairs, tol=args.cg_tol)))
    vectors_s = time.time() - t0
    d = lambda s: dict(vector=s.vector, model=s.model, layer=s.layer, meta=s.meta)
    if args.vectors: torch.save(dict(layer=v.layer, update=dict(v.update), info=v.update.info, caa=v.caa, probes=v.probes,
                                     scopes={k: (dict(u), u.info, d(s)) for k, (u, s) in v.scopes.items()},
                                     seconds=vectors_s), args.vectors)
print(v.settings(), f'\nvectors: {vectors_s:.0f} s', flush=True)
runs = dict(equivalence=lambda: equivalence_experiment(model, tok, args.layer, n_heldout=args.n_heldout, n_random=args.eq_random,
                                                       vectors=v),
            detox=lambda: detox_experiment(model, tok, args.layer, n=args.n, alphas=[float(a) for a in args.alphas.split(',')],
                                           random_alphas=[float(a) for a in args.random_alphas.split(',')],
                                           n_random=args.n_random, max_new_tokens=args.max_new_tokens, vectors=v))
for name in ([args.only] if args.only else runs):
    e = runs[name]()
    e.settings |= dict(command=command, vectors_wall_s=vectors_s, device=f'CPU, {torch.get_num_threads()} torch thread(s)')
    print(e.markdown(), f"\n{e.name}: {e.settings['wall_s']:.0f} s", flush=True)
    e.save(args.out)
print(f'total {time.time() - t0:.0f} s')
