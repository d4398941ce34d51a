"""EK-FAC preconditioner through kronfluence, for ias_nb's corpus chapter (module copy of ekfac_cells.md).

`ekfac_preconditioner(model, tokenizer, docs, damping)` fits kronfluence's EK-FAC factors on a corpus, the train
loss being each document's mean next-token loss, and returns g ↦ (H_EKFAC + λI)⁻¹ g over the covered nn.Linear
layers. Also here: brute-force stand-ins of part A's `document_scores`, `steer_query`, `identity_preconditioner`,
`cg_preconditioner` (per-document autograd; used only when `ias_nb.corpus` is not importable), and kronfluence's
own pairwise scores for a steer's functional or a query loss.
"""
import copy, math, tempfile
from typing import Callable, Optional, Sequence
import torch
from torch import nn, Tensor
import torch.nn.functional as F

__all__ = ['conv1d_as_linear', 'doc_batch', 'linear_modules', 'DocumentTask', 'ekfac_preconditioner', 'kronfluence_scores',
           'document_scores', 'steer_query', 'identity_preconditioner', 'cg_preconditioner', 'doc_losses']

# ---------------------------------------------------------------------------------------------------------------
def doc_batch(tokenizer, docs:Sequence[str], max_length:Optional[int]=None) -> dict:
    "Tokenize documents right-padded (pad = eos when the tokenizer has none): {'input_ids', 'attention_mask'}."
    if tokenizer.pad_token is None: tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = 'right'
    return dict(tokenizer(list(docs), return_tensors='pt', padding=True, truncation=max_length is not None,
                          max_length=max_length))

def doc_losses(model:nn.Module, batch:dict) -> Tensor:
    "Each document's mean next-token loss, padding ignored (as ias_nb.alignment.text_losses)."
    ids, am = batch['input_ids'], batch['attention_mask']
    logits = model(input_ids=ids, attention_mask=am).logits[:, :-1]
    tok = F.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction='none')
    mask = (am[:, :-1] * am[:, 1:]).to(tok.dtype)
    return (tok * mask).sum(1) / mask.sum(1).clamp_min(1)

def conv1d_as_linear(model:nn.Module) -> nn.Module:
    "A copy of `model` with transformers' Conv1D (y = x W + b, W in×out) replaced by the equal nn.Linear (W out×in)."
    from transformers.pytorch_utils import Conv1D
    model = copy.deepcopy(model)
    for name, m in list(model.named_modules()):
        if isinstance(m, Conv1D):
            lin = nn.Linear(*m.weight.shape, bias=m.bias is not None, dtype=m.weight.dtype, device=m.weight.device)
            with torch.no_grad():
                lin.weight.copy_(m.weight.T)
                if m.bias is not None: lin.bias.copy_(m.bias)
            parent, _, child = name.rpartition('.')
            setattr(model.get_submodule(parent) if parent else model, child, lin)
    return model

def linear_modules(model:nn.Module, modules:Optional[Sequence[str]]=None) -> list:
    "Names of the nn.Linear layers EK-FAC covers: `modules`, or every nn.Linear except the output head."
    lin = {n for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    if modules is None:
        head = model.get_output_embeddings() if hasattr(model, 'get_output_embeddings') else None
        return [n for n, m in model.named_modules() if n in lin and m is not head]
    bad = [n for n in modules if n not in lin]
    if bad:
        import difflib
        close = {b: difflib.get_close_matches(b, sorted(lin), n=3) for b in bad}
        raise ValueError(f"not nn.Linear layers of the model: {close} (name: closest valid names); "
                         "EK-FAC covers nn.Linear only (GPT-2's Conv1D is not nn.Linear: use a Llama-style model)")
    return list(modules)

# ---------------------------------------------------------------------------------------------------------------
class _Docs(torch.utils.data.Dataset):
    "Tokenized documents (each row trimmed of padding in `_collate`), repeated `repeats` times."
    def __init__(self, batch, repeats=1): self.b, self.n = batch, len(batch['input_ids']); self.r = repeats
    def __len__(self): return self.n * self.r
    def __getitem__(self, i): return {k: v[i % self.n] for k, v in self.b.items()}

def _collate(rows):
    "Stack rows and drop the columns that are padding in every row."
    b = {k: torch.stack([r[k] for r in rows]) for k in rows[0]}
    T = int(b['attention_mask'].sum(1).max())
    return {k: v[:, :T] if k in ('input_ids', 'attention_mask') else v for k, v in b.items()}

def _steer_rows(probe_batch:dict, t:Tensor) -> list:
    "Query rows for kronfluence: one probe (trimmed) with its target shift t_x on the last-token logits."
    return [dict(input_ids=probe_batch['input_ids'][i], attention_mask=probe_batch['attention_mask'][i], t=t[i])
            for i in range(len(t))]

class DocumentTask:
    "Factory for a kronfluence Task: train loss = each document's mean next-token loss; measurement = f_s or a query loss."
    def __new__(cls, modules:Sequence[str], measurement:str='loss'):
        from kronfluence.task import Task
        class _Task(Task):
            def compute_train_loss(self, batch, model, sample=False):
                ids, am = batch['input_ids'], batch['attention_mask']
                logits = model(input_ids=ids, attention_mask=am).logits[:, :-1].float()
                mask = (am[:, :-1] * am[:, 1:]).to(logits.dtype); T = mask.sum(1).clamp_min(1)
                if not sample:                               # ℓ(z): the mean next-token loss, summed over the batch
                    tok = F.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction='none')
                    return ((tok * mask).sum(1) / T).sum()
                with torch.no_grad():                        # labels drawn from the model: E[∇∇ᵀ] = GGN of ℓ(z)
                    y = torch.multinomial(logits.softmax(-1).flatten(0, 1), 1).view(logits.shape[:2])
                tok = F.cross_entropy(logits.transpose(1, 2), y, reduction='none')
                return ((tok * mask).sum(1) / T.sqrt()).sum()  # 1/√T: Σ_t (1/T)JᵀHJ, the GGN of the mean loss
            def compute_measurement(self, batch, model):
                if measurement == 'loss':                    # a query text's mean next-token loss
                    return self.compute_train_loss(batch, model, sample=False)
                ids, am = batch['input_ids'], batch['attention_mask']      # f_s: Σ_x ⟨t_x, last-token logits⟩
                logits = model(input_ids=ids, attention_mask=am).logits
                last = am.sum(1) - 1
                return (logits[torch.arange(len(ids)), last] * batch['t']).sum()
            def get_influence_tracked_modules(self): return list(modules)
            def get_attention_mask(self, batch): return batch['attention_mask']
        return _Task()

def _analyzer(model, task, out):
    from kronfluence.analyzer import Analyzer, prepare_model
    from kronfluence.utils.dataset import DataLoaderKwargs
    m = prepare_model(copy.deepcopy(model), task)            # kronfluence wraps modules in place: work on a copy
    an = Analyzer(analysis_name='ias_nb', model=m, task=task, output_dir=out, disable_tqdm=True, disable_model_save=True)
    an.set_dataloader_kwargs(DataLoaderKwargs(collate_fn=_collate))
    return an

def _fit(an, tokenizer, docs, batch_size, samples, max_length):
    from kronfluence.arguments import FactorArguments
    args = FactorArguments(strategy='ekfac', activation_covariance_dtype=torch.float64,
                           gradient_covariance_dtype=torch.float64, eigendecomposition_dtype=torch.float64,
                           lambda_dtype=torch.float64)
    an.fit_all_factors(factors_name='ekfac', dataset=_Docs(doc_batch(tokenizer, docs, max_length), samples),
                       per_device_batch_size=batch_size, factor_args=args, overwrite_output_dir=True)
    return an.load_all_factors('ekfac')

def ekfac_preconditioner(
    model:nn.Module,                  # a Hugging Face causal LM (its nn.Linear layers are covered)
    tokenizer,                        # its tokenizer
    docs:Sequence[str],               # the corpus whose GGN H is approximated
    damping:float,                    # λ in (H + λI)⁻¹
    modules:Optional[Sequence[str]]=None, # nn.Linear names (None: all but the output head)
    batch_size:int=8,                 # documents per batch while fitting
    samples:int=1,                    # sampled labels per document (Monte Carlo GGN)
    max_length:Optional[int]=None,    # truncate documents to this many tokens
) -> Callable[[dict], dict]:
    "g ↦ (H_EKFAC + λI)⁻¹ g over the covered nn.Linear layers, H the corpus GGN, factors fitted by kronfluence."
    if damping <= 0: raise ValueError(f"damping must be > 0, got {damping}")
    modules = linear_modules(model, modules)
    with tempfile.TemporaryDirectory() as out:
        factors = _fit(_analyzer(model, DocumentTask(modules), out), tokenizer, docs, batch_size, samples, max_length)
    lin = dict(model.named_modules())
    blocks = {}
    for n in modules:
        Qa = factors['activation_eigenvectors'][n].double(); Qs = factors['gradient_eigenvectors'][n].double()
        lam = factors['lambda_matrix'][n].double() / factors['num_lambda_processed'][n].double()
        blocks[n] = (Qa, Qs, lam + damping, lin[n].bias is not None)
    def precondition(g:dict) -> dict:
        "(H_EKFAC + λI)⁻¹ g on the covered layers' weights (and biases); g/λ on any other entry (as CG's)."
        res = {n: v / damping for n, v in g.items()}
        for n, (Qa, Qs, lam, bias) in blocks.items():
            if n + '.weight' not in g: continue
            G = g[n + '.weight'].double()
            if bias: G = torch.cat([G, g[n + '.bias'].double()[:, None]], 1)
            if G.shape != (Qs.shape[0], Qa.shape[0]):
                raise ValueError(f"{n}: gradient shape {tuple(G.shape)} vs EK-FAC factors {(Qs.shape[0], Qa.shape[0])}")
            P = Qs @ ((Qs.T @ G @ Qa) / lam) @ Qa.T
            dt = g[n + '.weight'].dtype
            res[n + '.weight'] = (P[:, :-1] if bias else P).to(dt)
            if bias: res[n + '.bias'] = P[:, -1].to(dt)
        return res
    precondition.modules = modules
    return precondition

def kronfluence_scores(
    model:nn.Module, tokenizer, docs:Sequence[str], damping:float,
    queries:dict,                     # {'texts': [...]} (loss) or {'probes': batch, 't': Tensor k×V} (f_s)
    modules:Optional[Sequence[str]]=None, batch_size:int=8, samples:int=1, max_length:Optional[int]=None,
) -> Tensor:
    "kronfluence's pairwise EK-FAC scores ⟨(H+λI)⁻¹∇m, ∇ℓ(z)⟩ summed over the query rows: Tensor (len(docs),)."
    from kronfluence.arguments import ScoreArguments
    modules = linear_modules(model, modules)
    kind = 'loss' if 'texts' in queries else 'steer'
    with tempfile.TemporaryDirectory() as out:
        an = _analyzer(model, DocumentTask(modules, kind), out)
        _fit(an, tokenizer, docs, batch_size, samples, max_length)
        q = (_Docs(doc_batch(tokenizer, queries['texts'], max_length)) if kind == 'loss'
             else _steer_rows(queries['probes'], queries['t']))
        an.compute_pairwise_scores(scores_name='s', factors_name='ekfac', query_dataset=q,
                                   train_dataset=_Docs(doc_batch(tokenizer, docs, max_length)),
                                   per_device_query_batch_size=len(q), per_device_train_batch_size=batch_size,
                                   score_args=ScoreArguments(damping_factor=damping, precondition_dtype=torch.float64,
                                                             score_dtype=torch.float64, per_sample_gradient_dtype=torch.float64),
                                   overwrite_output_dir=True)
        return an.load_pairwise_scores('s')['all_modules'].double().sum(0)

# ---------------------------------------------------------------------------------------------------------------
# Brute-force stand-ins for part A's ias_nb.corpus (same signatures), per-document autograd.
def document_scores(model, tokenizer, docs, query, batch_size=8) -> Tensor:
    "score_z = ⟨query, ∇θ ℓ(z)⟩ by one autograd gradient per document (reference implementation)."
    params = {n: p for n, p in model.named_parameters() if n in query}
    b = doc_batch(tokenizer, docs); out = []
    for i in range(len(docs)):
        row = _collate([{k: v[i] for k, v in b.items()}])
        g = torch.autograd.grad(doc_losses(model, row).sum(), list(params.values()), allow_unused=True)
        out.append(sum((query[n].double() * gi.double()).sum() for n, gi in zip(params, g) if gi is not None))
    return torch.stack(out)

def _last_logits(model, batch):
    logits = model(**batch).logits
    return logits[torch.arange(len(logits)), batch['attention_mask'].sum(1) - 1]

def steer_targets(model, tokenizer, layer, vector, probes, alpha=1.0) -> tuple:
    "(probe batch, t) with t_x = α J_h(x) s: the last-token logit shift of adding s at every position of `layer`."
    from ias_nb.steering import steer
    b = doc_batch(tokenizer, probes)
    eps = torch.zeros((), requires_grad=True)
    from torch.nn.attention import sdpa_kernel, SDPBackend
    with sdpa_kernel(SDPBackend.MATH), steer(model, layer, vector * eps): y = _last_logits(model, b)
    u = torch.zeros_like(y, requires_grad=True)                     # double-VJP: J s = ∂/∂u ⟨∂⟨u, y⟩/∂ε, 1⟩
    (gu,) = torch.autograd.grad((y * u).sum(), eps, create_graph=True)
    with sdpa_kernel(SDPBackend.MATH): (t,) = torch.autograd.grad(gu, u)
    t = alpha * t
    return b, t.detach()

def steer_query(model, tokenizer, layer, vector, probes, alpha=1.0, params=None) -> dict:
    "q = J_θᵀ t = ∇θ Σ_x ⟨t_x, y_θ(x)⟩ (reference implementation)."
    b, t = steer_targets(model, tokenizer, layer, vector, probes, alpha)
    named = {n: p for n, p in model.named_parameters() if params is None or n in params}
    g = torch.autograd.grad((_last_logits(model, b) * t).sum(), list(named.values()), allow_unused=True)
    return {n: gi.detach() for n, gi in zip(named, g) if gi is not None}

def identity_preconditioner(damping):
    "g ↦ g/λ."
    return lambda g: {n: v / damping for n, v in g.items()}

def cg_preconditioner(model, tokenizer, docs, damping, params=None, tol=1e-10, max_iter=500):
    "g ↦ (H + λI)⁻¹ g by CG on exact GGN-vector products over the whole corpus (reference implementation)."
    names = [n for n, _ in model.named_parameters() if params is None or n in params]
    base = {n: p.detach() for n, p in model.named_parameters()}
    b = doc_batch(tokenizer, docs)
    ids, am = b['input_ids'], b['attention_mask']
    mask = (am[:, :-1] * am[:, 1:]).double(); w = mask / mask.sum(1, keepdim=True).clamp_min(1) / len(docs)
    def logits(sub):
        return torch.func.functional_call(model, {**base, **sub}, (), dict(input_ids=ids, attention_mask=am)).logits[:, :-1].double()
    with torch.no_grad(): p = logits({}).softmax(-1)
    def ggn(v):
        _, jv = torch.func.jvp(logits, ({n: base[n] for n in names},), (v,))
        hjv = w[..., None] * p * (jv - (p * jv).sum(-1, keepdim=True))
        _, vjp = torch.func.vjp(logits, {n: base[n] for n in names})
        return vjp(hjv)[0]
    def solve(g):
        g = {n: g[n].double() for n in names if n in g}
        used = list(g)
        dot = lambda a, c: sum((a[n] * c[n]).sum() for n in used)
        def A(v):
            hv = ggn({n: v.get(n, torch.zeros_like(base[n])).to(base[n].dtype) for n in names})
            return {n: hv[n].double() + damping * v[n] for n in used}
        x = {n: torch.zeros_like(g[n]) for n in used}; r = dict(g); d = dict(g); rr = dot(r, r)
        for _ in range(max_iter):
            if rr.sqrt() <= tol * dot(g, g).sqrt(): break
            Ad = A(d); a = rr / dot(d, Ad)
            x = {n: x[n] + a * d[n] for n in used}; r = {n: r[n] - a * Ad[n] for n in used}
            rr2 = dot(r, r); d = {n: r[n] + rr2 / rr * d[n] for n in used}; rr = rr2
        return x
    return solve
