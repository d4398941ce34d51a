"""SmolLM2-135M-Instruct continuations without steering and with CAA and IAS vectors at a few strengths.

    OMP_NUM_THREADS=1 python examples/steered_text.py [--out results/steered_text.json]

Both vectors steer block 15 and have the CAA vector's norm; the contrast pairs and probes are written in the
model's chat template (`chat_pairs`, `chat_prompts`). The IAS solve (ridge μ = 1) uses `ias_vector`'s default
solver — dense J_h by batched JVPs at this size; its convergence is recorded next to the text. About 2-3 minutes
on a CPU. The README's tour shows the file.
"""
import argparse, json, time
from pathlib import Path
import torch
from ias_nb import steer, caa_vector, ias_vector, contrast_update, chat_prompts, chat_pairs
from ias_nb.models import load_smollm2

HAPPY_SAD = [("How was your day?", "It was wonderful! I feel so happy", "It was awful. I feel so sad"),
             ("How are you feeling?", "Great, full of joy and energy", "Terrible, full of sorrow and fatigue"),
             ("Tell me about your weekend.", "It was fantastic, full of laughter", "It was dreadful, full of tears")]
SYSTEM = "Be brief."

def continuation(model, tok, prompt:str, tokens:int=30) -> str:
    "Greedy continuation of one chat prompt."
    ids = tok(prompt, return_tensors='pt').input_ids
    with torch.no_grad(): out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=tokens, do_sample=False)
    return tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip()

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--out', default='results/steered_text.json'); p.add_argument('--layer', type=int, default=15)
    p.add_argument('--alphas', type=float, nargs='+', default=[0.5, 1.0, 2.0])
    a = p.parse_args(); t0 = time.time()
    model, tok = load_smollm2()
    positive, negative = chat_pairs(tok, HAPPY_SAD, system=SYSTEM)          # same question, happy vs sad reply
    caa = caa_vector(model, tok, a.layer, positive, negative)
    update = contrast_update(model, tok, positive, negative)                # up-weight happy replies, down-weight sad ones
    ias_v = ias_vector(model, tok, a.layer, chat_prompts(tok, ["How was your day?"], system=SYSTEM), update,
                       damping=1.0, norm=caa.norm().item())
    prompt = chat_prompts(tok, ["Tell me about your morning."], system=SYSTEM)[0]
    rows = [dict(method='none', alpha=0.0, text=continuation(model, tok, prompt))]
    for alpha in a.alphas:
        for method, vec in (('CAA', caa), ('IAS', ias_v.vector)):
            with steer(model, a.layer, vec, alpha=alpha): rows.append(dict(method=method, alpha=alpha, text=continuation(model, tok, prompt)))
    settings = dict(command='OMP_NUM_THREADS=1 python examples/steered_text.py', layer=a.layer, norm=caa.norm().item(),
                    cos_caa_ias=torch.nn.functional.cosine_similarity(caa, ias_v.vector, dim=0).item(),
                    **{f'ias_{k}': ias_v.meta[k] for k in ('gamma', 'solver', 'iterations', 'normal_residual', 'converged')}, seconds=time.time() - t0)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(dict(settings=settings, prompt="Tell me about your morning.", rows=rows), indent=1))
    for r in rows: print(f"{r['method']:4} α={r['alpha']:<4} {r['text']!r}")
    print(settings)

if __name__ == '__main__': main()
