"""Full runs of the paper's experiments (a) detoxification and (b) first-order equivalence on SmolLM2-135M.

    OMP_NUM_THREADS=1 python examples/detox_equivalence.py --out results

One CG solve (the detox update Δθ) and one IAS solve (its vector s*) are shared by both experiments; each writes
`<out>/detox.json|png` and `<out>/equivalence.json|png` with its settings, the command and the wall times.
"""
import argparse, time, torch
from ias_nb.models import load_causal_lm
from ias_nb.experiments import detox_vectors, detox_experiment, equivalence_experiment

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument('--model', default='smollm2'); p.add_argument('--out', default='results')
p.add_argument('--layer', default=0.5, type=float, help='relative depth of the steering block')
p.add_argument('--n', default=100, type=int, help='evaluation prompts of the detox experiment')
p.add_argument('--threads', default=None, type=int, help='torch threads (default: torch decides)')
args = p.parse_args()
if args.threads: torch.set_num_threads(args.threads)
command = 'OMP_NUM_THREADS=1 python examples/detox_equivalence.py --out results'
t0 = time.time()
model, tok = load_causal_lm(args.model)
v = detox_vectors(model, tok, args.layer)
vectors_s = time.time() - t0
print(v.settings(), f'\nvectors: {vectors_s:.0f} s', flush=True)
for run in (lambda: equivalence_experiment(model, tok, args.layer, vectors=v), lambda: detox_experiment(model, tok, args.layer, n=args.n, vectors=v)):
    e = run()
    e.settings |= dict(command=command, vectors_wall_s=vectors_s, device=f'CPU, {torch.get_num_threads()} torch threads')
    print(e.markdown(), f"\n{e.name}: {e.settings['wall_s']:.0f} s", flush=True)
    e.save(args.out)
print(f'total {time.time() - t0:.0f} s')
