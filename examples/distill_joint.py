"""A fine-tune distilled jointly over several layers (chapter 10b): does steering every layer at once carry it?

    OMP_NUM_THREADS=1 python examples/distill_joint.py tiny      # tiny GPT-2, the full fine-tune of examples/distill.py
    OMP_NUM_THREADS=1 python examples/distill_joint.py tiny --quick [--out ias-out/distill_joint_quick]   # about a minute
    OMP_NUM_THREADS=1 python examples/distill_joint.py smollm2   # SmolLM2-135M-Instruct, the LoRA of examples/distill.py
        # blocks 1–29 (a llama.cpp control vector's), 8 probes, 8 prompts for the held-out γ_v, 8 to choose α, 30 held
        # out, 4 random vector sets, 8 prompts for the cross-layer terms: 49 min on 2 shared cores (the J rows: 2 × 10
        # min). The solve is exact in a reduced output space (`unembedding_basis`); the vectors are also written as
        # one llama.cpp control vector (<out>/distill_joint_smollm2.gguf) with the llama-cli line that runs them.

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
import argparse, copy, json, math, sys, time
from pathlib import Path
from typing import Optional
import torch
sys.path.insert(0, str(Path(__file__).parent))
from distill import fine_tune, fine_tune_defaults, splits, mean_loss # examples/distill.py: the same fine-tune
from ias_nb.steering import parameter_delta, lm_batch, model_device, resolve_layer, centred_last_token_logits
from ias_nb.distill import (distill_joint, joint_ias, evaluate_joint, cross_layer_effect, JointJacobians, svd_rtol,
                             joint_agreement)
from ias_nb.jacobians import layer_hook, find_layer
from ias_nb.experiments import prompt_set
from ias_nb.models import load_tiny_gpt2, load_smollm2, cache_dir

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

def unembedding_basis(model) -> torch.Tensor:
    """Q (V × d, float64, orthonormal columns) spanning the range of the centred unembedding (I − 11ᵀ/V)W_U. The centred
    last-token logits are (I − 11ᵀ/V)W_U z, so every shift of them (J s, and v = J_θΔθ when the unembedding is not
    fine-tuned) lies in that range and ‖Qᵀ(Js − v)‖ = ‖Js − v‖: the least-squares problem in Qᵀ's coordinates is the
    same problem, with n·d rows instead of n·V."""
    head = model.get_output_embeddings()
    if getattr(head, 'bias', None) is not None: raise ValueError("the unembedding has a bias: the reduction needs none")
    W = head.weight.detach().double()
    return torch.linalg.qr(W - W.mean(0)).Q

def reduced_rows(model, tok, layers, prompts, Q, chunk:int=64) -> torch.Tensor:
    """QᵀJ, J = [J_ℓ1 … J_ℓL] the Jacobian of the centred last-token logits in one tied edit per layer (every
    position), one prompt at a time (rows prompt-major: n·d × L·d): d VJPs per prompt, batched `chunk` at a time,
    where forming J column by column takes L·d JVPs."""
    mods = [find_layer(model, l) for l in layers]; dt = next(model.parameters()).dtype; Qf = Q.to(dt)
    rows = []
    for p in prompts:
        s = torch.zeros(len(layers), Q.shape[1], dtype=dt, requires_grad=True)
        edits = dict(zip(mods, s))
        with layer_hook(mods, lambda mod, args, h: h + edits[mod]):
            y = centred_last_token_logits(model(**lm_batch(tok, [p], model_device(model)))).flatten() @ Qf
        E = torch.eye(len(y), dtype=dt)
        g = torch.cat([torch.autograd.grad(y, s, grad_outputs=E[i:i + chunk], is_grads_batched=True, retain_graph=True)[0]
                       for i in range(0, len(y), chunk)])
        rows.append(g.reshape(len(y), -1).detach())
    return torch.cat(rows)

def reduced_target(model, tok, layers, prompts, Q, dtheta) -> tuple:
    "(Qᵀv, ‖Qᵀv‖/‖v‖): the fine-tune's first-order shift v = J_θΔθ of the centred last-token logits, in Qᵀ's coordinates."
    cut = JointJacobians(model, layers[:1], lm_batch(tok, prompts, model_device(model)))
    v = cut.logit_shift(dtheta).detach().double().reshape(len(prompts), -1)
    vr = (v @ Q).flatten()
    return vr, (vr.norm() / v.norm()).item()

def reduction_check(model, tok, layers, prompts, Q, J, seed:int=0) -> dict:
    "QᵀJs from the VJP rows against the library's JVP (`JointJacobians.J`) for a random stacked s, and the share of ‖Js‖ in Q."
    cut = JointJacobians(model, layers, lm_batch(tok, prompts, model_device(model)))
    s = torch.randn(J.shape[1], generator=torch.Generator().manual_seed(seed))
    full = cut.J().matvec(s.to(cut.y0)).detach().double().reshape(len(prompts), -1)
    ref, mine = (full @ Q).flatten(), J.double() @ s.double()
    return dict(rel_err=((mine - ref).norm() / ref.norm()).item(), share_in_range=(ref.norm() / full.norm()).item())

def gram_spectrum(J, rtol=None) -> tuple:
    "(σ, U) of J from its m × m Gram matrix JJᵀ (float64), the singular values above rtol·σ₁ (`svd_rtol(J)` by default)."
    Jd = J.double(); ev, U = torch.linalg.eigh(Jd @ Jd.T); ev, U = ev.flip(0), U.flip(1)
    S = ev.clamp_min(0).sqrt(); keep = S > (rtol if rtol is not None else svd_rtol(J)) * S[0]
    return S[keep], U[:, keep]

def gram_solve(J, v, effort=None, spectrum=None) -> dict:
    """Minimum-norm least squares s = Jᵀ(JJᵀ)⁺v on the kept spectrum, or with a ridge μ set so that ‖s‖ = effort: the
    same solution as `ias(J, v)` and `effort_damping`, from the m × m Gram matrix (m ≪ L·d here) instead of an SVD."""
    Jd, vd = J.double(), v.double()
    S, U = spectrum if spectrum is not None else gram_spectrum(J)
    c = U.T @ vd
    norm = lambda mu: (S * c / (S**2 + mu)).norm().item()
    mu = 0.0
    if effort is not None and norm(0.0) > effort:
        lo, hi = math.log(S[-1].item()**2 * 1e-12), math.log(S[0].item() * c.norm().item() / effort)
        for _ in range(200):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if norm(math.exp(mid)) > effort else (lo, mid)
        mu = math.exp(hi)
    s = Jd.T @ (U @ (c / (S**2 + mu)))
    return dict(s=s, gamma=(c.norm() / vd.norm()).item(), residual=((vd - Jd @ s).norm() / vd.norm()).item(),
                effort=s.norm().item(), damping=mu, rank=len(S), m=J.shape[0], n=J.shape[1],
                normal_residual=((Jd.T @ (vd - Jd @ s) - mu * s).norm() / (Jd.T @ vd).norm()).item())

def kl_rows(lt, lq) -> torch.Tensor: return (lt.exp() * (lt - torch.log_softmax(lq.double(), -1))).sum(-1)

def last_token_diagnosis(base, tuned, tok, joint:dict, alpha:float, dtheta, prompts, seed:int=0) -> dict:
    """At the last token of each held-out prompt, KL(p_tuned ‖ ·) of: the base; the base plus the fine-tune's own
    first-order shift v = J_θΔθ (what any first-order fit aims at); the base plus αJs (the steer, to first order);
    the steered model. Ratios to the base's KL with bootstrap intervals, and cos(Js, v)."""
    from ias_nb.steering import steer, bootstrap_interval
    b = lm_batch(tok, prompts, model_device(base)); layers = list(joint)
    with torch.no_grad():
        lt = torch.log_softmax(tuned(**b).logits[:, -1].double(), -1); l0 = base(**b).logits[:, -1].double()
        with steer(base, joint, alpha=alpha): ls = base(**b).logits[:, -1]
    cut = JointJacobians(base, layers, b)
    v = cut.logit_shift(dtheta).detach().double().reshape(len(prompts), -1)
    Js = cut.J().matvec(torch.cat([joint[l] for l in layers]).to(cut.y0)).detach().double().reshape(len(prompts), -1)
    kls = {'base': kl_rows(lt, l0), 'base + v (fine-tune to first order)': kl_rows(lt, l0 + v),
           'base + αJs (joint steer to first order)': kl_rows(lt, l0 + alpha * Js), 'steered (joint, α)': kl_rows(lt, ls)}
    k0 = kls['base'].numpy(); ratio = lambda a, b: a.mean(-1) / b.mean(-1)
    rows = [dict(what=k, kl=float(x.mean()), kl_ratio=float(x.mean() / kls['base'].mean()),
                 kl_ratio_ci=bootstrap_interval(ratio, x.numpy(), k0, seed=seed)) for k, x in kls.items()]
    cos = (Js * v).sum() / (Js.norm() * v.norm())
    return dict(alpha=alpha, rows=rows, cos_Js_v=cos.item(), residual_alphaJs_v=((v - alpha * Js).norm() / v.norm()).item(),
                n=len(prompts))

def activation_change(base, tuned, tok, layers, prompts) -> tuple:
    """(layer → Δh = h_tuned − h_base at every real token of `prompts`, N × d; N flags: the token is its prompt's first,
    where SmolLM2's residual stream carries its ~100× larger 'attention sink' activations), one forward pass per model."""
    b = lm_batch(tok, prompts, model_device(base)); mask = b['attention_mask'].bool(); hs = {}
    for k, m in (('base', base), ('tuned', tuned)):
        mods = [find_layer(m, l) for l in layers]; names = dict(zip(mods, layers))
        with torch.no_grad(), layer_hook(mods, lambda mod, a, h: hs.__setitem__((k, names[mod]), h[mask].double())):
            m(**b)
    first = (mask & (mask.cumsum(1) == 1))[mask]
    return {l: hs[('tuned', l)] - hs[('base', l)] for l in layers}, first

def tied(x) -> Optional[float]:
    "N‖mean Δh‖² / Σ‖Δh‖²: the share of the change one vector tied over positions and prompts holds (None: no change)."
    den = (x**2).sum().item()
    return len(x) * x.mean(0).norm().item()**2 / den if den > 0 else None

def smollm2(a):
    from peft import LoraConfig, get_peft_model
    from distill import CHEERFUL
    from ias_nb.steering import lora_delta
    from ias_nb.duality import ias
    t0 = time.time(); times = {}
    def lap(k): times[k] = round(time.time() - t0, 1); print(f"[{times[k]:.0f} s] {k}", flush=True)
    base, tok = load_smollm2(); texts = CHEERFUL.read_text().splitlines()
    tuned_dir = cache_dir() / f'distill-smollm2-cheerful-lora-steps{a.steps}-lr{a.lr}'
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=['q_proj', 'v_proj'], layers_to_transform=list(range(8, 14)))
    if not (tuned_dir / 'adapter_model.safetensors').exists():
        fine_tune(get_peft_model(copy.deepcopy(base), cfg), tok, texts, a.steps, a.lr).save_pretrained(tuned_dir)
    dtheta = lora_delta(base, tuned_dir, torch.float32)
    tuned = copy.deepcopy(base)
    with torch.no_grad():
        for n, p in tuned.named_parameters():
            if n in dtheta: p.add_(dtheta[n])
    for m in (base, tuned): m.requires_grad_(False)
    ft = dict(kind='LoRA r=4, α=8 on q_proj, v_proj of blocks 8–13 (peft), as examples/distill.py smollm2',
              texts='examples/data/cheerful.txt (40)', steps=a.steps, lr=a.lr, batch=8, tuned=str(tuned_dir),
              loss_before=mean_loss(base, tok, texts), loss_after=mean_loss(tuned, tok, texts))
    lap('fine-tune'); print(ft, flush=True)
    sets = splits(*a.sizes)
    n = len(find_layer(base, 'model.layers'))
    layers = [resolve_layer(base, i) for i in (a.blocks or range(1, n))]       # `ias distill --layers all`: blocks 1–29
    d = base.config.hidden_size
    Q = unembedding_basis(base)
    J = reduced_rows(base, tok, layers, sets['probes'], Q); lap(f"J rows on the probes ({J.shape[0]} × {J.shape[1]})")
    v, v_share = reduced_target(base, tok, layers, sets['probes'], Q, dtheta)
    check = reduction_check(base, tok, layers, sets['probes'], Q, J) | dict(v_share_in_range=v_share)
    lap('reduction check'); print('reduction check:', check, flush=True)
    Jh = reduced_rows(base, tok, layers, sets['gamma_heldout'], Q)
    vh, _ = reduced_target(base, tok, layers, sets['gamma_heldout'], Q, dtheta); lap('J rows on the held-out γ prompts')
    cols = lambda M, k: M[:, k * d:(k + 1) * d]
    rows, singles = [], {}
    for k, l in enumerate(layers):
        r = ias(cols(J, k).double(), v, rtol=svd_rtol(cols(J, k)))
        s = r.delta_h.reshape(-1); singles[l] = s
        fit = cols(Jh, k).double() @ s
        rows.append(dict(layer=l, gamma_single=r.gamma, norm_single=s.norm().item(),
                         gamma_single_heldout=ias(cols(Jh, k).double(), vh, rtol=svd_rtol(cols(Jh, k))).gamma,
                         cos_single_heldout=(fit @ vh / (fit.norm() * vh.norm())).item()))
    k_chk = max(range(len(layers)), key=lambda k: rows[k]['gamma_single'])
    g_chk = gram_solve(cols(J, k_chk), v)
    check['gram_vs_ias_single'] = dict(layer=layers[k_chk], gamma_ias=rows[k_chk]['gamma_single'], gamma_gram=g_chk['gamma'],
                                       rel_diff_s=((g_chk['s'] - singles[layers[k_chk]]).norm() / singles[layers[k_chk]].norm()).item())
    best = layers[k_chk]; lap('single-layer solves'); print('gram vs ias:', check['gram_vs_ias_single'], flush=True)
    spec = gram_spectrum(J); gamma_heldout = gram_solve(Jh, vh)['gamma']
    def joint_record(g):
        fit = Jh.double() @ g['s']
        return {k: x for k, x in g.items() if k != 's'} | dict(layers=layers, gamma_heldout=gamma_heldout,
                cos_heldout=(fit @ vh / (fit.norm() * vh.norm())).item(), residual_heldout=((vh - fit).norm() / vh.norm()).item())
    jm = gram_solve(J, v, spectrum=spec); joint = joint_record(jm)
    je = gram_solve(J, v, effort=rows[k_chk]['norm_single'], spectrum=spec)
    joint_eq = joint_record(je) | dict(effort_cap=rows[k_chk]['norm_single'])
    split = lambda s: {l: s[k * d:(k + 1) * d].float() for k, l in enumerate(layers)}
    vec, vec_eq = split(jm['s']), split(je['s'])
    for r in rows: r['norm'], r['norm_equal_budget'] = vec[r['layer']].norm().item(), vec_eq[r['layer']].norm().item()
    lap('joint solves'); print('joint:', joint, '\nequal budget:', joint_eq, flush=True)
    from ias_nb.steering import export_gguf, block_index
    cv = a.out / 'distill_joint_smollm2.gguf'                  # the joint vectors as one llama.cpp control vector
    export_gguf({block_index(base, l): x for l, x in vec.items()}, cv, 'llama',
                provenance=dict(method='distill-joint', base='SmolLM2-135M-Instruct', tuned=str(tuned_dir)))
    blocks = sorted(block_index(base, l) for l in vec)
    llama_cli = (f"llama-cli -m smollm2-135m-instruct-f32.gguf --control-vector-scaled {cv.name}:1 "
                 f"--control-vector-layer-range {blocks[0]} {blocks[-1]} -p {json.dumps(sets['heldout'][0])}")
    print('control vector:', cv, '\nllama.cpp command line:', llama_cli, flush=True)
    for r in rows: print({k: (round(x, 4) if isinstance(x, float) else x) for k, x in r.items()})
    out = dict(settings=dict(command=a.command, fine_tune=ft, layers=layers, prompts={k: len(x) for k, x in sets.items()},
                             solver='exact reduction to the centred unembedding range (d rows a prompt, VJPs) + float64 '
                                    'Gram / SVD solves', sizes=a.sizes, n_random=a.n_random, alphas=list(a.alphas),
                             cli=f"ias distill --base smollm2 --tuned {tuned_dir} --layers all --joint "
                                 "--probes ias_nb/data/eval_prompts.txt --out ias-out", seconds=times),
               reduction_check=check, joint=joint, joint_equal_budget=joint_eq, rows=rows, best_single=best,
               control_vector=dict(file=cv.name, llama_cli=llama_cli))
    dest = a.out / 'distill_joint_smollm2.json'
    save = lambda: dest.write_text(json.dumps(out, indent=1))
    save()
    ev = evaluate_joint(base, tuned, tok, vec, (best, singles[best].float()), sets['alpha_fit'], sets['heldout'],
                        alphas=a.alphas, n_random=a.n_random, extra={'joint, equal budget': vec_eq})
    out['evaluation'] = ev; lap('evaluation'); save()
    for r in ev['rows']:
        print(f"{r['method']:32s} α {r['alpha']:<5g} KL/KL(base) {r['kl_ratio']:.3f} [{r['kl_ratio_ci'][0]:.3f}, "
              f"{r['kl_ratio_ci'][1]:.3f}]  changed tokens {r['share']:.3f} [{r['share_ci'][0]:.3f}, {r['share_ci'][1]:.3f}]", flush=True)
    out['first_order'] = {k: last_token_diagnosis(base, tuned, tok, x, 1.0, dtheta, sets['heldout'])
                          for k, x in (('joint', vec), ('joint, equal budget', vec_eq))}
    lap('first-order diagnosis'); save()
    for k, x in out['first_order'].items():
        print(k, 'α', x['alpha'], 'cos(Js, v)', round(x['cos_Js_v'], 4))
        for r in x['rows']: print('   ', r['what'], round(r['kl_ratio'], 4), [round(c, 4) for c in r['kl_ratio_ci']], flush=True)
    dh, first = activation_change(base, tuned, tok, layers, sets['heldout'])
    shares = {l: dict(every_token=tied(x), without_first_token=tied(x[~first])) for l, x in dh.items()}
    last_lora = resolve_layer(base, 13)
    from ias_nb.steering import bootstrap_interval
    oracles = {'every token': dh[last_lora].mean(0), 'without the first token': dh[last_lora][~first].mean(0)}
    ag = joint_agreement(base, tuned, tok, {k: [{last_lora: x.float()}] for k, x in oracles.items()}, sets['heldout'], [0.0, 1.0])
    orows = []
    for k, x in oracles.items():
        kl0, kl1 = ag[k]['kl'][0, 0], ag[k]['kl'][0, 1]
        orows.append(dict(mean_over=k, kl_ratio=float(kl1.mean() / kl0.mean()),
                          kl_ratio_ci=bootstrap_interval(lambda p, q: p.mean(-1) / q.mean(-1), kl1, kl0),
                          share=float(ag[k]['hit'][0, 1].sum() / max(ag['changed'].sum(), 1)), norm=x.norm().item()))
    rms = lambda x: x.norm(dim=1).pow(2).mean().sqrt().item()
    out['position'] = dict(tied_share=shares, oracle_tied_block13=dict(
        what='the mean of Δh over the held-out prompts themselves (in-sample), added at block 13 at every position; '
             'after block 13 the fine-tuned model equals the base, so this is the best a least-squares tied vector there does',
        rows=orows, delta_h_rms_first_token=rms(dh[last_lora][first]), delta_h_rms_other_tokens=rms(dh[last_lora][~first])))
    lap('position dependence'); save()
    print('tied share:', shares); print('oracle tied vector at block 13:', out['position']['oracle_tied_block13'], flush=True)
    out['cross_layer'] = cross_layer_effect(base, tok, vec, sets['heldout'][:a.cross_prompts], alphas=(0.5, 1.0, 2.0))
    lap('cross-layer effect'); print('cross-layer effect:', out['cross_layer'])
    out['settings']['seconds'] = times; save()
    print(f"written {dest} ({time.time() - t0:.0f} s)")

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('model', choices=['tiny', 'smollm2'])
    p.add_argument('--steps', type=int, default=None); p.add_argument('--lr', type=float, default=None)
    p.add_argument('--solver', default='auto', choices=['auto', 'dense', 'lsqr'])
    p.add_argument('--quick', action='store_true', help='tiny: the same fine-tune, then the smallest sizes (about a minute)')
    p.add_argument('--out', type=Path, default=None, help='folder of the JSON (default: ias-out, or '
                                                           'ias-out/distill_joint_quick with --quick)')
    p.add_argument('--sizes', type=int, nargs=4, default=[8, 8, 8, 30], help='smollm2: probes, held-out γ, α fit, held-out')
    p.add_argument('--n-random', type=int, default=4); p.add_argument('--cross-prompts', type=int, default=8)
    p.add_argument('--alphas', type=float, nargs='+', default=[0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0])
    p.add_argument('--blocks', type=int, nargs='+', default=None, help='smollm2: blocks (default 1 to the last)')
    a = p.parse_args(); torch.manual_seed(0)
    a.out = a.out or Path('ias-out/distill_joint_quick' if a.quick else 'ias-out')
    a.out.mkdir(parents=True, exist_ok=True)            # before the work
    a.command = 'OMP_NUM_THREADS=1 python examples/distill_joint.py ' + ' '.join(sys.argv[1:])
    fine_tune_defaults(a); (tiny if a.model == 'tiny' else smollm2)(a)

if __name__ == '__main__':
    main()
