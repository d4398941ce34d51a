"""From a fine-tune to a steering vector: distil it at several layers and measure, on held-out prompts, how much of
its effect on next-token distributions one tied steer carries — beside the mean activation difference and
equal-norm random vectors.

    OMP_NUM_THREADS=1 python examples/distill.py tiny      # tiny GPT-2, full fine-tune on ias_nb/data/contrast_neutral.txt
    OMP_NUM_THREADS=1 python examples/distill.py smollm2   # SmolLM2-135M + a rank-4 LoRA trained on examples/data/cheerful.txt
        # blocks 4 (below the LoRA), 14, 24; dense solve on 4 probes (576 batched JVPs + one SVD per layer) and a
        # second one on 4 held-out prompts for their γ_v: 22 min (17 min of CPU time) on 2 shared cores, peak ~6 GB.
        # LSQR here costs ~1 s an iteration (a JVP ~0.8 s + a VJP ~0.15 s, one idle core) and in float32 had not met
        # its 1e-6 test after 200 iterations (normal residual 2e-4).
    OMP_NUM_THREADS=1 python examples/distill.py tiny --quick [--out ias-out/distill_quick]   # seconds of CPU time

Writes <out>/distill_<name>.json and one figure per layer, <out>/distill_<name>_<layer>.png (--out: ias-out, or
ias-out/distill_quick with --quick; the committed results/ were written with --out results). The fine-tuned model
(tiny) or adapter (smollm2) is kept under ias_nb's cache, and with --quick under --out, so `ias distill --base ...
--tuned <that folder>` reproduces the vectors (the command is printed). --quick makes the same fine-tune (same texts,
steps, learning rate and seed) and then distils it at the smallest sizes: 2 probes, 2 random vectors, α ∈ {0, 1},
8 held-out prompts, no held-out γ_v solve and no null-direction check; tiny: blocks 1 and 2 (19 s of CPU time, 2 min
wall on busy shared cores); smollm2: block 14 by LSQR capped at 10 iterations (73 s of CPU time, 14 min wall there).
Prompts: the shipped evaluation prompts (20 subjects × 10 stems),
split by subject — subjects 0–9 fit (probes of the solve, choice of α), subjects 10–19 are held out.
"""
import argparse, copy, json, time
from pathlib import Path
import torch
from ias_nb.steering import (parameter_delta, lora_delta, distill, evaluate_distillation, plot_distillation,
                             lm_batch, model_device)
from ias_nb.experiments import prompt_set
from ias_nb.alignment import text_losses
from ias_nb.models import load_tiny_gpt2, load_smollm2, cache_dir

CHEERFUL = Path(__file__).parent / 'data' / 'cheerful.txt'

def mean_loss(model, tok, texts) -> float:
    "Mean over texts of each text's mean next-token loss."
    with torch.no_grad(): return text_losses(model, lm_batch(tok, texts, model_device(model))).mean().item()

def fine_tune(model, tok, texts, steps:int, lr:float, batch:int=8, seed:int=0):
    "AdamW on the mean next-token loss of random batches of `texts` (every trainable parameter)."
    torch.manual_seed(seed); g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(texts), (batch,), generator=g).tolist()
        loss = text_losses(model, lm_batch(tok, [texts[i] for i in idx])).mean()
        opt.zero_grad(); loss.backward(); opt.step()
    return model.eval()

def splits(n_probe:int, n_gamma:int, n_fit:int, n_held:int) -> dict:
    "Prompt splits by subject: the solve's probes and α choice from subjects 0–9, held-out sets from 10–19."
    lines = prompt_set('eval_prompts'); fit, held = lines[:100], lines[100:]
    pick = lambda xs, k: xs[::len(xs) // k][:k]
    return dict(probes=pick(fit, n_probe), gamma_heldout=pick(held, n_gamma), alpha_fit=pick(fit[1:], n_fit),
                heldout=pick(held[1:], n_held))

def cli_line(name:str, tuned_dir:Path, layers, quick:bool) -> str:
    """The command line that distils the same fine-tune with `ias distill` at one layer (2 random vectors: a minute on
    the tiny GPT-2; --layers takes a list). After a full run, from a fresh clone: the example's quick mode first makes
    the same fine-tune under ias-out/distill_quick (same texts, steps, learning rate and seed). After a quick run: on
    the folder it wrote."""
    model = 'tiny' if name == 'tiny-gpt2' else 'smollm2'
    return ('' if quick else f"python examples/distill.py {model} --quick && ") + (
        f"ias distill --base {'tiny-gpt2' if model == 'tiny' else 'smollm2'} "
        f"--tuned {tuned_dir if quick else 'ias-out/distill_quick/' + tuned_dir.name} --layers {','.join(str(l) for l in layers)} "
        "--n-random 2 --probes ias_nb/data/eval_prompts.txt --out ias-out/distill")

def run(name:str, base, tok, tuned_dir:Path, dtheta:dict, tuned, layers, sets:dict, n_random:int, alphas,
        finetune:dict, command:str, t0:float, solver:str='auto', heldout_gamma:bool=True, out_dir:Path=Path('ias-out'),
        maxiter:int=None, cli_layers=None, quick:bool=False):
    t1, c1 = time.time(), time.process_time()
    d = distill(base, tok, dtheta, layers, sets['probes'], sets['gamma_heldout'],
                provenance=dict(base=name, tuned=str(tuned_dir)), solver=solver,
                heldout_gamma=heldout_gamma, **(dict(maxiter=maxiter) if maxiter else {}))
    t_distill, c_distill = time.time() - t1, time.process_time() - c1
    evals = []
    for layer, sv in d.vectors.items():
        ev = evaluate_distillation(base, tuned, tok, layer, sv.vector, sets['alpha_fit'], sets['heldout'],
                                   alphas=alphas, n_random=n_random)
        evals.append(ev)
        fig = plot_distillation(ev, f"{name}: {layer} (γ_v {sv.meta['gamma']:.2f})")
        fig.savefig(out_dir / f"distill_{name}_{layer.replace('.', '_')}.png", dpi=110)
        print(layer, {k: (round(v, 4) if isinstance(v, float) else v) for k, v in d.rows[len(evals) - 1].items()})
        for r in ev['rows']: print('   ', r['method'], f"α {r['alpha']}", f"KL ratio {r['kl_ratio']:.3f}",
                                   [round(x, 3) for x in r['kl_ratio_ci']], f"share {r['share']:.3f}",
                                   [round(x, 3) for x in r['share_ci']])
    settings = dict(command=command, fine_tune=finetune, tuned=str(tuned_dir), n_params_changed=len(dtheta),
                    changed_numel=sum(t.numel() for t in dtheta.values()), layers=list(d.vectors),
                    prompts={k: len(v) for k, v in sets.items()}, alphas=list(alphas), n_random=n_random,
                    solver=solver, heldout_gamma=heldout_gamma, seconds_distill=t_distill, seconds=time.time() - t0,
                    cpu_seconds_distill=c_distill, cpu_seconds=time.process_time(),
                    cli=cli_line(name, tuned_dir, cli_layers or layers, quick))
    out = dict(settings=settings, rows=d.rows, choice=dict(layer=d.choice.layer, reason=d.choice.reason),
               evaluation=evals, probes=sets['probes'])
    (out_dir / f'distill_{name}.json').write_text(json.dumps(out, indent=1))
    print('layer rule:', d.choice.reason); print(settings)
    print(f"written to {out_dir}: distill_{name}.json and one figure per layer")

def null_direction_check(base, tok, probes) -> dict:
    """A fine-tune that is exactly a steer (a bias δ after block 2 of the tiny GPT-2, float32): the distilled
    vector against δ less its all-ones component, dense with float64's and with float32's rank tolerance, and LSQR."""
    from torch import nn
    from ias_nb.duality import ias
    from ias_nb.jacobians import LayerJacobians
    from ias_nb.steering import ias_vector, rank_rtol, centred_last_token_logits
    class BiasAfter(nn.Module):
        def __init__(self, block, d): super().__init__(); self.block, self.delta = block, nn.Parameter(torch.zeros(d))
        def forward(self, *args, **kw):
            out = self.block(*args, **kw)
            return (out[0] + self.delta,) + tuple(out[1:]) if isinstance(out, tuple) else out + self.delta
    m = copy.deepcopy(base); m.transformer.h[2] = BiasAfter(m.transformer.h[2], m.config.n_embd)
    delta = torch.randn(m.config.n_embd, generator=torch.Generator().manual_seed(0))
    visible = delta.double() - delta.double().mean()
    cut = LayerJacobians(m, 'transformer.h.2', lm_batch(tok, probes), output=centred_last_token_logits,
                         params=['transformer.h.2.delta'])
    J, v = cut.dense('J_h'), cut.logit_shift({'transformer.h.2.delta': delta})
    lsqr = ias_vector(m, tok, 'transformer.h.2', probes, {'transformer.h.2.delta': delta}, solver='lsqr',
                      output=centred_last_token_logits).vector
    out = {}
    for key, s in (('dense, float64 tolerance', ias(J, v).delta_h), ('dense, rank_rtol', ias(J, v, rtol=rank_rtol(J)).delta_h),
                   ('lsqr', lsqr)):
        s = s.double()
        out[key] = dict(one_minus_cos=1 - (s @ visible / (s.norm() * visible.norm())).item(), mean=s.mean().item(),
                        rel_err=((s - visible).norm() / visible.norm()).item())
    print('null direction check:', out)
    return out

def tiny(a):
    t0 = time.time()
    base, tok = load_tiny_gpt2(progress=False)
    texts = prompt_set('contrast_neutral')
    tuned_dir = (a.out if a.quick else cache_dir()) / f'distill-tiny-gpt2-neutral-steps{a.steps}-lr{a.lr}'
    before = mean_loss(base, tok, texts)
    if (tuned_dir / 'model.safetensors').exists():
        tuned = type(base).from_pretrained(tuned_dir).eval()
    else:
        tuned = fine_tune(copy.deepcopy(base), tok, texts, a.steps, a.lr)
        tuned.save_pretrained(tuned_dir); tok.save_pretrained(tuned_dir)
    ft = dict(kind='full fine-tune (AdamW, every parameter)', texts='ias_nb/data/contrast_neutral.txt (50)',
              steps=a.steps, lr=a.lr, batch=8, loss_before=before, loss_after=mean_loss(tuned, tok, texts),
              seconds=time.time() - t0)
    print('fine-tune:', ft)
    dtheta = parameter_delta(base, tuned, torch.float32)
    if a.quick:
        run('tiny-gpt2', base, tok, tuned_dir, dtheta, tuned, [1, 2], splits(2, 2, 4, 8), 2, (0.0, 1.0), ft,
            f'OMP_NUM_THREADS=1 python examples/distill.py tiny --quick --out {a.out}', t0, heldout_gamma=False,
            out_dir=a.out, cli_layers=[2], quick=True)
        return
    ft['null_direction_check'] = null_direction_check(base, tok, splits(8, 8, 24, 60)['probes'])
    run('tiny-gpt2', base, tok, tuned_dir, dtheta, tuned, [0, 1, 2, 3], splits(8, 8, 16, 40), 8,
        (0.0, 0.5, 1.0, 2.0, 3.0), ft, 'OMP_NUM_THREADS=1 python examples/distill.py tiny', t0, out_dir=a.out,
        cli_layers=[2])

def smollm2(a):
    from peft import LoraConfig, get_peft_model
    t0 = time.time()
    base, tok = load_smollm2()
    texts = CHEERFUL.read_text().splitlines()
    tuned_dir = (a.out if a.quick else cache_dir()) / f'distill-smollm2-cheerful-lora-steps{a.steps}-lr{a.lr}'
    before = mean_loss(base, tok, texts)
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=['q_proj', 'v_proj'], layers_to_transform=list(range(8, 14)))
    if not (tuned_dir / 'adapter_model.safetensors').exists():
        pm = get_peft_model(copy.deepcopy(base), cfg)
        fine_tune(pm, tok, texts, a.steps, a.lr).save_pretrained(tuned_dir)
    dtheta = lora_delta(base, tuned_dir, torch.float32)
    tuned = copy.deepcopy(base)
    with torch.no_grad():
        for n, p in tuned.named_parameters():
            if n in dtheta: p.add_(dtheta[n])
    ft = dict(kind='LoRA r=4, α=8 on q_proj, v_proj of blocks 8–13 (peft)', texts='examples/data/cheerful.txt (40)',
              steps=a.steps, lr=a.lr, batch=8, loss_before=before, loss_after=mean_loss(tuned, tok, texts),
              seconds=time.time() - t0)
    print('fine-tune:', ft)
    if a.quick:                     # one layer, 2 probes, LSQR capped at 10 iterations: the command runs, not the figures
        run('smollm2', base, tok, tuned_dir, dtheta, tuned, [14], splits(2, 2, 4, 8), 2, (0.0, 1.0), ft,
            f'OMP_NUM_THREADS=1 python examples/distill.py smollm2 --quick --out {a.out}', t0, solver='lsqr',
            heldout_gamma=False, out_dir=a.out, maxiter=10, cli_layers=[14], quick=True)
        return
    sets = splits(4, 4, 8, 30)
    ft['solve_profile'] = solve_profile(base, tok, dtheta, 14, sets['probes'])
    print('solve profile:', ft['solve_profile'])
    run('smollm2', base, tok, tuned_dir, dtheta, tuned, [4, 14, 24], sets, 4,
        (0.0, 0.5, 1.0, 2.0, 4.0), ft, 'OMP_NUM_THREADS=1 python examples/distill.py smollm2', t0,
        solver='dense', out_dir=a.out, cli_layers=[14])   # dense: 576 batched JVPs + one SVD per solve; a second solve on held-out prompts for their γ_v

def solve_profile(base, tok, dtheta, layer, probes) -> dict:
    """Why LSQR is slow on SmolLM2 here: the seconds of one J_h matvec (a JVP, eager attention) and one rmatvec (a
    VJP) on the probes, against the dense path's 576 JVPs batched through `vmap` plus one SVD."""
    from ias_nb.jacobians import LayerJacobians
    from ias_nb.steering import resolve_layer, centred_last_token_logits
    cut = LayerJacobians(base, resolve_layer(base, layer), lm_batch(tok, probes), output=centred_last_token_logits,
                         params=list(dtheta))
    op = cut.J_h(); u = torch.randn(op.shape[1], generator=torch.Generator().manual_seed(0))
    t = time.time(); w = op.matvec(u); t_mv = time.time() - t
    t = time.time(); op.rmatvec(w); t_rmv = time.time() - t
    return dict(layer=layer, m=op.shape[0], d=op.shape[1], seconds_matvec=t_mv, seconds_rmatvec=t_rmv)

FINE_TUNE = {'tiny': (60, 3e-4), 'smollm2': (40, 1e-3)}   # (steps, lr): the fine-tune this and distill_joint.py distil

def fine_tune_defaults(a):
    "Fill --steps and --lr, where not given, with the model's fine-tune settings (`FINE_TUNE`)."
    steps, lr = FINE_TUNE[a.model]; a.steps, a.lr = a.steps or steps, a.lr or lr

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('model', choices=['tiny', 'smollm2'])
    p.add_argument('--steps', type=int, default=None); p.add_argument('--lr', type=float, default=None)
    p.add_argument('--quick', action='store_true', help='the same fine-tune, then the smallest distillation (a minute on the tiny GPT-2)')
    p.add_argument('--out', type=Path, default=None, help='folder of the JSON and figures (default: ias-out, '
                                                           'or ias-out/distill_quick with --quick)')
    a = p.parse_args()
    a.out = a.out or Path('ias-out/distill_quick' if a.quick else 'ias-out')
    torch.manual_seed(0); a.out.mkdir(parents=True, exist_ok=True)
    fine_tune_defaults(a); (tiny if a.model == 'tiny' else smollm2)(a)

if __name__ == '__main__':
    main()
