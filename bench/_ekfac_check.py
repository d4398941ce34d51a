"EK-FAC vs a dense float64 damped GGN solve on a tiny Llama with a character tokenizer (the test in ekfac_cells.md)."
import sys, time, torch, scipy.stats
from torch import nn
sys.path.insert(0, __file__.rsplit('/', 1)[0])
from _ekfac import *
from _ekfac import doc_losses, _collate

def char_tokenizer(texts):
    "A character-level Hugging Face tokenizer over the characters of `texts` (plus an end-of-text token)."
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    chars = sorted(set(''.join(texts)))
    vocab = {c: i for i, c in enumerate(['<eos>'] + chars)}
    tk = Tokenizer(models.WordLevel(vocab, unk_token='<eos>'))
    tk.pre_tokenizer = pre_tokenizers.Split('', 'isolated')
    return PreTrainedTokenizerFast(tokenizer_object=tk, eos_token='<eos>', pad_token='<eos>')

def tiny_llama(vocab, d=8, layers=2, seed=0):
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=d, intermediate_size=2 * d, num_hidden_layers=layers,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64, initializer_range=float(__import__("os").environ.get("INIT","0.2")),
                      tie_word_embeddings=False, attn_implementation='eager')
    return LlamaForCausalLM(cfg).eval()

def dense_ggn(model, tok, docs, names):
    "Dense GGN of the mean corpus loss (1/N)Σ_z (1/T_z)Σ_t J_tᵀ(diag p − ppᵀ)J_t over parameters `names`, float64."
    m = __import__('copy').deepcopy(model).double()
    base = {n: p.detach() for n, p in m.named_parameters()}
    b = doc_batch(tok, docs); P = sum(base[n].numel() for n in names); H = torch.zeros(P, P, dtype=torch.float64)
    for i in range(len(docs)):
        row = _collate([{k: v[i] for k, v in b.items()}]); T = row['input_ids'].shape[1] - 1
        f = lambda sub: torch.func.functional_call(m, {**base, **sub}, (), row).logits[0, :-1]
        J = torch.func.jacrev(f)({n: base[n] for n in names})
        J = torch.cat([J[n].reshape(T, -1, base[n].numel()) for n in names], -1)      # T × V × P
        with torch.no_grad(): p = f({}).softmax(-1)
        HJ = p[..., None] * (J - (p[..., None] * J).sum(1, keepdim=True))
        H += torch.einsum('tvp,tvq->pq', J, HJ) / T / len(docs)
    return H

def flat(d, names): return torch.cat([d[n].double().flatten() for n in names])

if __name__ == '__main__':
    from pydoc_data.topics import topics
    paras = [p.strip() for k in sorted(topics) for p in topics[k].split('\n\n') if 80 <= len(p.strip())]
    docs = [p[:32] for p in paras[:int(sys.argv[1]) if len(sys.argv) > 1 else 64]]; probes = [p[:20] for p in paras[200:204]]
    tok = char_tokenizer(docs + probes); model = tiny_llama(len(tok))
    mods = linear_modules(model); names = [n + '.weight' for n in mods]
    t0 = time.time(); H = dense_ggn(model, tok, docs, names); print('dense GGN', H.shape, f'{time.time()-t0:.1f}s')
    ev = torch.linalg.eigvalsh(H); print('eig max/mean', ev.max().item(), ev.mean().item())
    s = torch.randn(8, generator=torch.Generator().manual_seed(0))
    q = steer_query(model, tok, 'model.layers.0', s, probes, params=names)
    G = torch.stack([flat(dict(zip(names, torch.autograd.grad(doc_losses(model, _collate([{k: v[i] for k, v in doc_batch(tok, docs).items()}])).sum(),
                     [dict(model.named_parameters())[n] for n in names]))), names) for i in range(len(docs))])
    for lam_rel in [float(x) for x in sys.argv[2].split(",")]:
        lam = lam_rel * ev.mean().item() * 1
        exact = G @ torch.linalg.solve(H + lam * torch.eye(len(H), dtype=H.dtype), flat(q, names))
        t0 = time.time(); pre = ekfac_preconditioner(model, tok, docs, lam, samples=int(sys.argv[3])); tf = time.time() - t0
        ek = G @ flat(pre(q), names); idn = G @ flat(q, names)
        sp = lambda a: scipy.stats.spearmanr(a.numpy(), exact.numpy())[0]
        print(f'λ={lam:.3g} (rel {lam_rel}) ekfac {sp(ek):.3f} identity {sp(idn):.3f} fit {tf:.1f}s  '
              f'cos(ekfac q̃, exact q̃) {torch.nn.functional.cosine_similarity(flat(pre(q), names), torch.linalg.solve(H + lam*torch.eye(len(H), dtype=H.dtype), flat(q, names)), 0).item():.3f}')
