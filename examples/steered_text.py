"""SmolLM2-135M-Instruct continuations without steering and with CAA and IAS vectors at a few strengths.

    OMP_NUM_THREADS=1 python examples/steered_text.py [--out ias-out/steered_text.json]   # committed: --out results/steered_text.json
    OMP_NUM_THREADS=1 python examples/steered_text.py --quick   # tiny GPT-2, block 2, α 1, 16 tokens: ias-out/steered_text_quick.json

Both vectors steer block 15 and have the CAA vector's norm; the contrast pairs and probes are written in the
model's chat template (`chat_pairs`, `chat_prompts`). The IAS solve (ridge μ = 1) uses `ias_vector`'s default
solver — dense J_h by batched JVPs at this size; its convergence is recorded next to the text. About 2-3 minutes
on a CPU. The README's tour shows the file. --quick runs the same steps on the tiny GPT-2 (no chat template, so
the pairs and the prompt are plain "question reply" texts) in seconds: the script runs, its text is noise.
"""
import argparse, json, sys, time
from pathlib import Path
import torch
from ias_nb import steer, caa_vector, ias_vector, contrast_update, chat_prompts, chat_pairs
from ias_nb.models import load_causal_lm

HAPPY_SAD = [("How was your day?", "It was wonderful! I feel so happy", "It was awful. I feel so sad"),
             ("How are you feeling?", "Great, full of joy and energy", "Terrible, full of sorrow and fatigue"),
             ("Tell me about your weekend.", "It was fantastic, full of laughter", "It was dreadful, full of tears")]
SYSTEM = "Be brief."
QUICK = dict(model='tiny-gpt2', out='ias-out/steered_text_quick.json', layer=2, alphas=[1.0], tokens=16)

def templated(tok, pairs=None, users=None) -> tuple:
    "Pairs (positive, negative texts) or prompts in the model's chat template, or as plain 'question reply' texts."
    chat = getattr(tok, 'chat_template', None) is not None
    if pairs is not None:
        return (chat_pairs(tok, pairs, system=SYSTEM) if chat else
                ([f"{q} {a}" for q, a, _ in pairs], [f"{q} {b}" for q, _, b in pairs]))
    return chat_prompts(tok, users, system=SYSTEM) if chat else list(users)

def continuation(model, tok, prompt:str, tokens:int=30) -> str:
    "Greedy continuation of one chat prompt."
    ids = tok(prompt, return_tensors='pt').input_ids
    with torch.no_grad(): out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=tokens, do_sample=False)
    return tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip()

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--out', default='ias-out/steered_text.json'); p.add_argument('--layer', type=int, default=15)
    p.add_argument('--alphas', type=float, nargs='+', default=[0.5, 1.0, 2.0])
    p.add_argument('--model', default='smollm2'); p.add_argument('--tokens', type=int, default=30)
    p.add_argument('--quick', action='store_true', help='tiny GPT-2 at the smallest sizes into ias-out/steered_text_quick.json')
    if '--quick' in sys.argv[1:]: p.set_defaults(**QUICK)
    a = p.parse_args(); t0 = time.time()
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)                   # before the work
    model, tok = load_causal_lm(a.model)
    positive, negative = templated(tok, HAPPY_SAD)                          # same question, happy vs sad reply
    caa = caa_vector(model, tok, a.layer, positive, negative)
    update = contrast_update(model, tok, positive, negative)                # up-weight happy replies, down-weight sad ones
    ias_v = ias_vector(model, tok, a.layer, templated(tok, users=["How was your day?"]), update,
                       damping=1.0, norm=caa.norm().item())
    prompt = templated(tok, users=["Tell me about your morning."])[0]
    rows = [dict(method='none', alpha=0.0, text=continuation(model, tok, prompt, a.tokens))]
    for alpha in a.alphas:
        for method, vec in (('CAA', caa), ('IAS', ias_v.vector)):
            with steer(model, a.layer, vec, alpha=alpha): rows.append(dict(method=method, alpha=alpha, text=continuation(model, tok, prompt, a.tokens)))
    settings = dict(command='OMP_NUM_THREADS=1 python examples/steered_text.py' + (' --quick' if a.quick else ''),
                    model=a.model, layer=a.layer, norm=caa.norm().item(),
                    cos_caa_ias=torch.nn.functional.cosine_similarity(caa, ias_v.vector, dim=0).item(),
                    **{f'ias_{k}': ias_v.meta[k] for k in ('gamma', 'solver', 'iterations', 'normal_residual', 'converged')}, seconds=time.time() - t0)
    Path(a.out).write_text(json.dumps(dict(settings=settings, prompt="Tell me about your morning.", rows=rows), indent=1))
    for r in rows: print(f"{r['method']:4} α={r['alpha']:<4} {r['text']!r}")
    print(settings)

if __name__ == '__main__': main()
