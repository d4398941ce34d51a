"""A fine-tune distilled jointly over several layers (chapter 10b): does steering every layer at once carry it?

    OMP_NUM_THREADS=1 python examples/distill_joint.py tiny      # tiny GPT-2, the full fine-tune of examples/distill.py
    OMP_NUM_THREADS=1 python examples/distill_joint.py tiny --quick [--out ias-out/distill_joint_quick]   # about a minute

On held-out prompts (the shipped evaluation prompts split by subject, as examples/distill.py): KL(p_tuned‖p_steered)
relative to KL(p_tuned‖p_base) and the share of the fine-tune's changed greedy tokens reproduced, with bootstrap
intervals, for the joint vectors (blocks 1 to the last, those a llama.cpp control vector holds), the best single
layer's own vector, the per-layer mean activation difference and equal-norm random vectors at the same layers; the
cross-layer effect against α; and two diagnostics of why a steer falls short: the first-order error (KL to the
fine-tune of the base plus the fine-tune's own first-order logit shift at the last token, against the joint steer's
fit of that shift) and position dependence (the share of the fine-tune's activation change at each layer that one
vector tied over positions can hold). Writes <out>/distill_joint_<name>.json (--out: ias-out; the committed one was written with --out results). --quick: the same
fine-tune (kept under --out, default ias-out/distill_joint_quick), then 2 probes, 8 held-out prompts, 2 random
vectors, α ∈ {0, 1}: the script runs, not the figures.
"""
import argparse, copy, json, sys, time
from pathlib import Path
import torch
sys.path.insert(0, str(Path(__file__).parent))
from distill import fine_tune, splits, mean_loss                     # examples/distill.py: the same fine-tune
from ias_nb.steering import parameter_delta, lm_batch, model_device, resolve_layer
from ias_nb.distill import distill_joint, joint_ias, evaluate_joint, cross_layer_effect
from ias_nb.jacobians import layer_hook, find_layer
from ias_nb.experiments import prompt_set
from ias_nb.models import load_tiny_gpt2, cache_dir

def tied_share(base, tuned, tok, layer, prompts) -> float:
    """Share of Σ‖Δh(x,t)‖² (fine-tune minus base, every real token) that the best single tied vector holds:
    N‖mean Δh‖² / Σ‖Δh‖² (1: the change is one vector at every position; near 0: it depends on the position)."""
    hs = {}
    b = lm_batch(tok, prompts, model_device(base)); mask = b['attention_mask'].bool()
    for k, m in (('base', base), ('tuned', tuned)):
        with torch.no_grad(), layer_hook(find_layer(m, resolve_layer(m, layer)), lambda mod, a, h: hs.__setitem__(k, h)):
            m(**b)
    dh = (hs['tuned'] - hs['base'])[mask].double()
    return (len(dh) * dh.mean(0).norm()**2 / (dh**2).sum()).item()

def tiny(a):
    t0 = time.time()
    base, tok = load_tiny_gpt2(progress=False)
    texts = prompt_set('contrast_neutral')
    tuned_dir = (a.out if a.quick else cache_dir()) / f'distill-tiny-gpt2-neutral-steps{a.steps}-lr{a.lr}'
    if (tuned_dir / 'model.safetensors').exists(): tuned = type(base).from_pretrained(tuned_dir).eval()
    else:
        tuned = fine_tune(copy.deepcopy(base), tok, texts, a.steps, a.lr)
        tuned.save_pretrained(tuned_dir); tok.save_pretrained(tuned_dir)
    ft = dict(kind='full fine-tune (AdamW, every parameter), as examples/distill.py tiny', steps=a.steps, lr=a.lr,
              loss_before=mean_loss(base, tok, texts), loss_after=mean_loss(tuned, tok, texts))
    dtheta = parameter_delta(base, tuned, torch.float32)
    sets = splits(2, 2, 4, 8) if a.quick else splits(8, 8, 16, 40)
    alphas, n_random, effect_alphas = ((0.0, 1.0), 2, (1.0,)) if a.quick else ((0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0), 8,
                                                                              (0.25, 0.5, 1.0, 2.0))
    n = len(find_layer(base, 'transformer.h'))
    layers = [resolve_layer(base, i) for i in range(1, n)]           # `ias distill --layers all`
    t1 = time.time()
    d = distill_joint(base, tok, dtheta, layers, sets['probes'], sets['gamma_heldout'], solver=a.solver)
    eq = distill_joint(base, tok, dtheta, layers, sets['probes'], sets['gamma_heldout'], solver='dense', effort='single',
                       single=False)   # an equal budget: total ‖s‖ that of the best single layer's vector
    best = max(d.rows, key=lambda r: r['gamma_single'])['layer']
    s_best = joint_ias(base, tok, [best], sets['probes'], dtheta, solver=a.solver).vectors[best]
    t_solve = time.time() - t1
    print(d.markdown()); print('equal budget:', {k: v for k, v in eq.joint.items() if k != 'layers'})
    ev = evaluate_joint(base, tuned, tok, {l: sv.vector for l, sv in d.vectors.items()}, (best, s_best),
                        sets['alpha_fit'], sets['heldout'], alphas=alphas, n_random=n_random,
                        extra={'joint, equal budget': {l: sv.vector for l, sv in eq.vectors.items()}})
    for r in ev['rows']:
        print(f"{r['method']:32s} α {r['alpha']:<5g} KL/KL(base) {r['kl_ratio']:.3f} [{r['kl_ratio_ci'][0]:.3f}, "
              f"{r['kl_ratio_ci'][1]:.3f}]  changed tokens {r['share']:.3f} [{r['share_ci'][0]:.3f}, {r['share_ci'][1]:.3f}]")
    effect = {k: cross_layer_effect(base, tok, {l: sv.vector for l, sv in x.vectors.items()}, sets['heldout'][:16],
                                    alphas=effect_alphas) for k, x in (('minimum norm', d), ('equal budget', eq))}
    for k, rows in effect.items(): print('cross-layer effect,', k, [{c: round(v, 4) for c, v in r.items()} for r in rows])
    tied = {l: tied_share(base, tuned, tok, l, sets['heldout']) for l in layers}
    print('tied share of the activation change:', {k: round(v, 4) for k, v in tied.items()})
    command = 'OMP_NUM_THREADS=1 python examples/distill_joint.py tiny' + (f' --quick --out {a.out}' if a.quick else '')
    out = dict(settings=dict(command=command, fine_tune=ft,
                             layers=layers, solver=a.solver, prompts={k: len(v) for k, v in sets.items()},
                             seconds_solve=t_solve, seconds=time.time() - t0,
                             cli=f"python examples/distill.py tiny --quick && ias distill --base tiny-gpt2 --tuned "
                                 f"ias-out/distill_quick/{tuned_dir.name} --layers all --joint "
                                 "--probes ias_nb/data/eval_prompts.txt --out ias-out/distill_joint"),
               joint=d.joint, joint_equal_budget=eq.joint, rows=d.rows, best_single=best, evaluation=ev, cross_layer=effect, tied_share=tied)
    (a.out / 'distill_joint_tiny-gpt2.json').write_text(json.dumps(out, indent=1))
    print(f"written {a.out / 'distill_joint_tiny-gpt2.json'} ({time.time() - t0:.0f} s)")

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('model', choices=['tiny'])
    p.add_argument('--steps', type=int, default=60); p.add_argument('--lr', type=float, default=3e-4)
    p.add_argument('--solver', default='auto', choices=['auto', 'dense', 'lsqr'])
    p.add_argument('--quick', action='store_true', help='the same fine-tune, then the smallest sizes (about a minute)')
    p.add_argument('--out', type=Path, default=None, help='folder of the JSON (default: ias-out, or '
                                                           'ias-out/distill_joint_quick with --quick)')
    a = p.parse_args(); a.out = a.out or Path('ias-out/distill_joint_quick' if a.quick else 'ias-out')
    a.out.mkdir(parents=True, exist_ok=True)            # before the work
    torch.manual_seed(0); tiny(a)

if __name__ == '__main__':
    main()
