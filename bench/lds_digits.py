"""Linear datamodeling score on dattri's own kind of setting: scikit-learn's digits (ships offline) with logistic
regression and with a small MLP, ground truth by retraining on M random 50% subsets; our influence (exact, CG,
identity) beside dattri's attributors and kronfluence's EK-FAC on the same subsets and queries.

    OMP_NUM_THREADS=1 PYTHONPATH=. python bench/lds_digits.py                # both models, every method
    OMP_NUM_THREADS=1 PYTHONPATH=. python bench/lds_digits.py --quick        # a one-minute smoke run

Data: the digits' stratified train split (1,437 images, 8×8 → 64 features in [0, 1]); queries: the cross-entropy
loss of Q test images, each its own measurement. Training (what users run, to convergence):
  logistic regression: scikit-learn's L-BFGS on the mean loss + (l2/2)‖w‖², to tol 1e-10: convex and deterministic, so one
      run per subset; its two-seed ceiling is 1 by construction and is not reported;
  MLP 64 → 32 (tanh) → 10: full-batch Adam from a random initialisation (seed), 2 seeds per subset: the truth is their
      mean, their agreement a ceiling.
Influence is computed at the model trained on the whole train split (seed 0) — as dattri's benchmarks do.
Score of training point z for query q: ⟨(H + λI)⁻¹∇ℓ_q, ∇ℓ(z)⟩ (H: the Hessian of the regularised mean loss for
logistic regression, its Gauss–Newton matrix for the MLP); the prediction for a subset S is −Σ_{z∈S} score_q(z).
LDS = Spearman over subsets per query, averaged over queries, 95% bootstrap interval over queries (`ias_nb.corpus`).
Methods: `METHODS`, a dict name → scoring function (Q×N); a method that fails shows its error.
"""
import argparse, json, sys, time, traceback
from pathlib import Path
import numpy as np, torch
from torch import nn
from ias_nb.models import digits_data
from ias_nb.influence import Objective, hvp, ggn, ihvp, per_example_grads
from ias_nb.corpus import random_subsets, subset_predictions, lds, seed_ceiling, datamodel_ceiling

torch.set_default_dtype(torch.float64)
ce = lambda out, y: nn.functional.cross_entropy(out, y)

def make_model(kind:str, seed:int) -> nn.Module:
    torch.manual_seed(seed)
    if kind == 'logreg':
        m = nn.Sequential(nn.Linear(64, 10)); nn.init.zeros_(m[0].weight); nn.init.zeros_(m[0].bias); return m
    return nn.Sequential(nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 10))

def fit(kind:str, X, Y, l2:float, seed:int=0, steps:int=200) -> nn.Module:
    "Train to convergence: L-BFGS (logistic regression, from zero) or full-batch Adam (MLP, from a seeded init)."
    m = make_model(kind, seed)
    loss = lambda: ce(m(X), Y) + 0.5 * l2 * sum((p ** 2).sum() for p in m.parameters())
    if kind == 'logreg':                                   # scikit-learn's L-BFGS: C = 1/(l2·n) (its intercept unpenalised)
        from sklearn.linear_model import LogisticRegression
        lr = LogisticRegression(C=1 / (l2 * len(X)), tol=1e-10, max_iter=10_000).fit(X.numpy(), Y.numpy())
        with torch.no_grad():
            m[0].weight.copy_(torch.from_numpy(lr.coef_)); m[0].bias.copy_(torch.from_numpy(lr.intercept_))
    else:
        opt = torch.optim.Adam(m.parameters(), lr=1e-2)
        for _ in range(steps):
            opt.zero_grad(); loss().backward(); opt.step()
    return m.eval()

def test_losses(m, Xq, Yq) -> np.ndarray:
    with torch.no_grad(): return nn.functional.cross_entropy(m(Xq), Yq, reduction='none').numpy()

# ---------------------------------------------------------------- methods: each returns scores Q×N
def ours(ctx, how:str) -> np.ndarray:
    obj = ctx['obj']; G = per_example_grads(obj)                                   # N×P
    Gq = per_example_grads(obj, ctx['Xq'], ctx['Yq'])                              # Q×P
    H = (hvp if ctx['kind'] == 'logreg' else ggn)(obj)
    if how == 'identity': Qt = Gq.T / ctx['damping']
    elif how == 'dense':                                  # H materialised 128 columns at a time (bounded memory)
        E = torch.eye(obj.n_params)
        Hd = torch.cat([torch.func.vmap(H, in_dims=1, out_dims=1)(E[:, i:i + 128]) for i in range(0, len(E), 128)], 1)
        Qt = ihvp(Hd, Gq.T.contiguous(), ctx['damping'], method='dense')
    else: Qt = ihvp(H, Gq.T.contiguous(), ctx['damping'], method='cg', maxiter=ctx['args'].cg_iters)
    return (Qt.T @ G.T).numpy()

def dattri_scores(ctx, kind:str) -> np.ndarray:
    from dattri.task import AttributionTask
    from dattri.algorithm import (IFAttributorExplicit, IFAttributorCG, IFAttributorLiSSA, IFAttributorDataInf,
                                  IFAttributorArnoldi, TRAKAttributor, TracInAttributor)
    from torch.utils.data import DataLoader, TensorDataset
    from torch.func import functional_call
    model, l2 = ctx['model'], ctx['l2']
    def loss_func(params, data):
        x, y = data
        if x.dim() == 1: x, y = x[None], y[None]
        out = functional_call(model, params, (x,))
        return ce(out, y) + 0.5 * l2 * sum((p ** 2).sum() for p in params.values())
    def target_func(params, data):
        x, y = data
        if x.dim() == 1: x, y = x[None], y[None]
        return nn.functional.cross_entropy(functional_call(model, params, (x,)), y, reduction='sum')
    task = AttributionTask(loss_func=loss_func, target_func=target_func, model=model, checkpoints=model.state_dict())
    train, test = TensorDataset(ctx['X'], ctx['Y']), TensorDataset(ctx['Xq'], ctx['Yq'])
    dl = lambda d: DataLoader(d, batch_size=len(d) if kind in ('IF-explicit', 'IF-CG') else 256)
    lam = ctx['damping']
    if kind == 'Grad-Dot':
        att = TracInAttributor(task=task, weight_list=torch.ones(1), normalized_grad=False)
        return att.attribute(dl(train), dl(test)).detach().double().numpy().T
    if kind == 'TRAK':
        def correct_probability_func(params, data):
            x, y = data
            return torch.exp(-ce(functional_call(model, params, (x[None] if x.dim() == 1 else x,)),
                                 y[None] if y.dim() == 0 else y))
        att = TRAKAttributor(task=task, correct_probability_func=correct_probability_func,
                             projector_kwargs=dict(proj_dim=ctx['args'].trak_dim, device='cpu'), regularization=lam)
        att.cache(dl(train)); return att.attribute(dl(test)).detach().double().numpy().T
    att = dict(**{'IF-explicit': lambda: IFAttributorExplicit(task=task, regularization=lam),
                  'IF-CG': lambda: IFAttributorCG(task=task, regularization=lam, max_iter=ctx['args'].cg_iters),
                  'IF-LiSSA': lambda: IFAttributorLiSSA(task=task, damping=lam),
                  'IF-DataInf': lambda: IFAttributorDataInf(task=task, regularization=lam),
                  'IF-Arnoldi': lambda: IFAttributorArnoldi(task=task, regularization=lam)})[kind]()
    att.cache(dl(train)); return att.attribute(dl(train), dl(test)).detach().double().numpy().T

def kronfluence_scores(ctx) -> np.ndarray:
    "kronfluence 1.0.1 EK-FAC pairwise scores (its Task: mean cross-entropy; nn.Linear layers)."
    import tempfile, copy
    from kronfluence.analyzer import Analyzer, prepare_model
    from kronfluence.arguments import FactorArguments, ScoreArguments
    from kronfluence.task import Task
    from torch.utils.data import TensorDataset
    class DigitsTask(Task):
        def compute_train_loss(self, batch, model, sample=False):
            x, y = batch; out = model(x)
            if sample:
                with torch.no_grad(): y = torch.multinomial(out.softmax(-1), 1).flatten()
            return nn.functional.cross_entropy(out, y, reduction='sum')
        def compute_measurement(self, batch, model):
            x, y = batch; return nn.functional.cross_entropy(model(x), y, reduction='sum')
    task = DigitsTask()
    f64 = dict(activation_covariance_dtype=torch.float64, gradient_covariance_dtype=torch.float64,
               eigendecomposition_dtype=torch.float64, lambda_dtype=torch.float64)
    with tempfile.TemporaryDirectory() as out:
        an = Analyzer(analysis_name='digits', model=prepare_model(copy.deepcopy(ctx['model']), task), task=task,
                      output_dir=out, disable_tqdm=True, disable_model_save=True)
        train = TensorDataset(ctx['X'], ctx['Y'])
        an.fit_all_factors(factors_name='ekfac', dataset=train, per_device_batch_size=256,
                           factor_args=FactorArguments(strategy='ekfac', **f64), overwrite_output_dir=True)
        an.compute_pairwise_scores(scores_name='s', factors_name='ekfac', query_dataset=TensorDataset(ctx['Xq'], ctx['Yq']),
                                   train_dataset=train, per_device_query_batch_size=len(ctx['Xq']),
                                   per_device_train_batch_size=256,
                                   score_args=ScoreArguments(damping_factor=ctx['damping'], precondition_dtype=torch.float64,
                                                             score_dtype=torch.float64,
                                                             per_sample_gradient_dtype=torch.float64),
                                   overwrite_output_dir=True)
        return an.load_pairwise_scores('s')['all_modules'].double().numpy()

METHODS = {
    'random score (floor)': lambda ctx: np.random.default_rng(1).normal(size=(len(ctx['Xq']), len(ctx['X']))),
    'ours, exact (dense solve)': lambda ctx: ours(ctx, 'dense'),
    'ours, CG': lambda ctx: ours(ctx, 'cg'),
    'ours, identity': lambda ctx: ours(ctx, 'identity'),
    'kronfluence 1.0.1 EK-FAC': kronfluence_scores,
    'dattri 0.3 IF-explicit': lambda ctx: dattri_scores(ctx, 'IF-explicit'),
    'dattri 0.3 IF-CG': lambda ctx: dattri_scores(ctx, 'IF-CG'),
    'dattri 0.3 IF-LiSSA': lambda ctx: dattri_scores(ctx, 'IF-LiSSA'),
    'dattri 0.3 IF-DataInf': lambda ctx: dattri_scores(ctx, 'IF-DataInf'),
    'dattri 0.3 IF-Arnoldi': lambda ctx: dattri_scores(ctx, 'IF-Arnoldi'),
    'dattri 0.3 TRAK': lambda ctx: dattri_scores(ctx, 'TRAK'),
    'dattri 0.3 Grad-Dot': lambda ctx: dattri_scores(ctx, 'Grad-Dot'),
}

def bench(kind:str, a, X, Y, Xq, Yq) -> dict:
    t0 = time.perf_counter(); seeds = 1 if kind == 'logreg' else a.seeds
    mask = random_subsets(len(X), a.m, seed=0)
    meas = np.stack([np.stack([test_losses(fit(kind, X[mask[i]], Y[mask[i]], a.l2, seed=sd), Xq, Yq)
                               for i in range(a.m)]) for sd in range(seeds)])
    t_train = time.perf_counter() - t0; truth = meas.mean(0)
    ceilings = {'linear datamodel, fitted on half the subsets': datamodel_ceiling(mask, truth)}
    if seeds >= 2: ceilings['two-seed Spearman (one seed vs the other)'] = seed_ceiling(meas[0], meas[1])
    model = fit(kind, X, Y, a.l2, seed=0)
    obj = Objective(model, ce, X, Y, l2=a.l2)
    ctx = dict(kind=kind, model=model, obj=obj, X=X, Y=Y, Xq=Xq, Yq=Yq, l2=a.l2, damping=a.damping, args=a)
    rows = []
    for name in [s.strip() for s in a.methods.split(';')]:
        t1 = time.perf_counter()
        if name == 'dattri 0.3 IF-explicit' and obj.n_params > a.explicit_max:
            rows.append(dict(method=name, seconds=0.0, error=f"not run: dattri's explicit Hessian (torch.func.hessian of the "
                f"full-batch loss) for P = {obj.n_params:,} > --explicit-max {a.explicit_max:,} parameters; a first run's process "
                "reached 6.6 GB after it on logistic regression (P = 650), on a 24 GB machine shared by six jobs"))
            print(f"  {kind} {name}: skipped", flush=True); continue
        try:
            sc = np.asarray(METHODS[name](ctx), np.float64)
            assert sc.shape == (len(Xq), len(X)), f"scores of shape {sc.shape}, expected {(len(Xq), len(X))}"
            if np.nanmax(np.nanstd(sc, 1)) == 0: raise ValueError(f"the method's scores are the same for every training point (all {sc.flat[0]:g})")
            r = lds(-subset_predictions(sc, mask), truth)
            rows.append(dict(method=name, lds=[r['lds'], r['low'], r['high']], seconds=time.perf_counter() - t1))
            print(f"  {kind} {name}: LDS {r['lds']:+.3f} [{r['low']:+.2f}, {r['high']:+.2f}] "
                  f"({time.perf_counter() - t1:.0f} s)", flush=True)
        except Exception as e:
            traceback.print_exc()
            rows.append(dict(method=name, error=f"{type(e).__name__}: {str(e)[:400]}", seconds=time.perf_counter() - t1))
            print(f"  {kind} {name}: failed — {rows[-1]['error'][:200]}", flush=True)
    acc = (model(Xq).argmax(1) == Yq).double().mean().item()
    return dict(model=kind, seeds=seeds, train_seconds=t_train, test_accuracy_full_model=acc,
                ceilings={k: [v['lds'], v['low'], v['high']] for k, v in ceilings.items()}, rows=rows,
                measurements=meas.tolist())

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--m', type=int, default=100); ap.add_argument('--queries', type=int, default=100)
    ap.add_argument('--seeds', type=int, default=2); ap.add_argument('--l2', type=float, default=1e-3)
    ap.add_argument('--damping', type=float, default=1e-3); ap.add_argument('--cg-iters', type=int, default=100)
    ap.add_argument('--trak-dim', type=int, default=512); ap.add_argument('--explicit-max', type=int, default=1000); ap.add_argument('--models', default='logreg,mlp')
    ap.add_argument('--methods', default=';'.join(METHODS), help='method names separated by ;')
    ap.add_argument('--quick', action='store_true'); ap.add_argument('--out', default='results/lds_digits.json')
    a = ap.parse_args()
    if a.quick: a.m, a.queries = 10, 10
    t0 = time.perf_counter()
    Xtr, ytr, Xte, yte = digits_data(0)
    X, Y = Xtr.flatten(1).double(), ytr
    Xq, Yq = Xte.flatten(1).double()[:a.queries], yte[:a.queries]
    res = [bench(kind, a, X, Y, Xq, Yq) for kind in a.models.split(',')]
    out = dict(command='OMP_NUM_THREADS=1 PYTHONPATH=. python ' + ' '.join(sys.argv),
               run_seconds=time.perf_counter() - t0, cores='2 CPU cores shared with other jobs, OMP_NUM_THREADS=1',
               sizes=dict(N=len(X), M=a.m, queries=len(Xq), l2=a.l2, damping=a.damping, cg_iters=a.cg_iters,
                          trak_dim=a.trak_dim), benchmarks=res)
    Path(a.out).parent.mkdir(exist_ok=True, parents=True)
    json.dump(out, open(a.out, 'w'), indent=1, default=float)
    print(f"wrote {a.out} ({out['run_seconds']:.0f} s)")

if __name__ == '__main__': main()
