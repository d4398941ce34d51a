"""Our influence scores beside dattri (explicit and CG iHVP) and kronfluence (EK-FAC) on one model and data.

    pip install dattri kronfluence        # bench-only extras: pip install -e ".[bench]"
    python bench/influence_peers.py

Model: multinomial logistic regression on scikit-learn's digits (650 parameters, float64, trained to
convergence with a ridge λ), so the Hessian of the training loss is positive definite and every method
targets the same quantity: score(test, train) = ∇ℓ(test)ᵀ (H + λI)⁻¹ ∇ℓ(train). Prints the Spearman rank
correlation of the score matrices against ours and the wall-time ratios.
"""
import tempfile, time
import numpy as np, scipy.stats, torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from sklearn.datasets import load_digits
from ias_nb.influence import Objective, influence_matrix

LAM, N_TRAIN, N_TEST = 1e-2, 1000, 100
torch.set_default_dtype(torch.float64)

def setup():
    d = load_digits()
    X = torch.tensor(d.data / 16); Y = torch.tensor(d.target)
    model = nn.Sequential(nn.Linear(64, 10))
    obj = Objective(model, F.cross_entropy, X[:N_TRAIN], Y[:N_TRAIN], l2=LAM)
    theta = torch.zeros(650)
    for _ in range(30):                                   # Newton on the ridge objective
        g = torch.func.grad(obj.mean_loss)(theta)
        if g.norm() < 1e-10: break
        theta = theta - torch.linalg.solve(torch.func.hessian(obj.mean_loss)(theta), g)
    with torch.no_grad(): torch.nn.utils.vector_to_parameters(theta, model.parameters())
    return model, X[:N_TRAIN], Y[:N_TRAIN], X[N_TRAIN:N_TRAIN + N_TEST], Y[N_TRAIN:N_TRAIN + N_TEST]

def ours(model, Xtr, Ytr, Xte, Yte, method):
    obj = Objective(model, F.cross_entropy, Xtr, Ytr)
    loss_te = lambda out: F.cross_entropy(out, Yte, reduction='none')
    # I(z→test loss) with ε = 1: −∇ℓ(test)ᵀ(H+λI)⁻¹∇ℓ(z); the score is its negative
    return -influence_matrix(obj, Xte, curvature='hessian', damping=LAM, eps=1.0, method=method, output=loss_te)

def dattri_scores(model, Xtr, Ytr, Xte, Yte, kind):
    from dattri.task import AttributionTask
    from dattri.algorithm.influence_function import IFAttributorExplicit, IFAttributorCG
    def loss_func(params, data):
        x, y = data
        return F.cross_entropy(torch.func.functional_call(model, params, (x,)), y)
    task = AttributionTask(loss_func=loss_func, model=model, checkpoints=model.state_dict())
    att = (IFAttributorExplicit(task=task, regularization=LAM) if kind == 'explicit'
           else IFAttributorCG(task=task, regularization=LAM, max_iter=100, tol=1e-8))
    full = DataLoader(TensorDataset(Xtr, Ytr), batch_size=len(Xtr))
    att.cache(full)
    s = att.attribute(DataLoader(TensorDataset(Xtr, Ytr), batch_size=100), DataLoader(TensorDataset(Xte, Yte), batch_size=100))
    return s.T if s.shape == (len(Xtr), len(Xte)) else s

def kronfluence_scores(model, Xtr, Ytr, Xte, Yte):
    from kronfluence.analyzer import Analyzer, prepare_model
    from kronfluence.arguments import FactorArguments, ScoreArguments
    from kronfluence.task import Task
    class Cls(Task):
        def compute_train_loss(self, batch, model, sample=False):
            x, y = batch; logits = model(x)
            if sample:
                with torch.no_grad(): y = torch.multinomial(torch.softmax(logits, -1), 1).flatten()
            return F.cross_entropy(logits, y, reduction='sum')
        def compute_measurement(self, batch, model):
            x, y = batch; return F.cross_entropy(model(x), y, reduction='sum')
    m = prepare_model(model, Cls())
    with tempfile.TemporaryDirectory() as out:
        an = Analyzer(analysis_name='peers', model=m, task=Cls(), output_dir=out, disable_tqdm=True)
        an.fit_all_factors(factors_name='ekfac', dataset=TensorDataset(Xtr, Ytr), per_device_batch_size=200,
                           factor_args=FactorArguments(strategy='ekfac'), overwrite_output_dir=True)
        an.compute_pairwise_scores(scores_name='s', factors_name='ekfac', query_dataset=TensorDataset(Xte, Yte),
                                   train_dataset=TensorDataset(Xtr, Ytr), per_device_query_batch_size=100,
                                   score_args=ScoreArguments(damping_factor=LAM), overwrite_output_dir=True)
        return an.load_pairwise_scores('s')['all_modules']

def timed(f, *a):
    t = time.perf_counter(); r = f(*a); return torch.as_tensor(r).detach().double(), time.perf_counter() - t

def main():
    args = setup()
    ref, t_ref = timed(ours, *args, 'dense')
    rows = [('ias_nb dense (Cholesky)', ref, t_ref), ('ias_nb CG', *timed(ours, *args, 'cg'))]
    for name, f in [('dattri explicit', lambda *a: dattri_scores(*a, 'explicit')), ('dattri CG', lambda *a: dattri_scores(*a, 'cg')),
                    ('kronfluence EK-FAC', kronfluence_scores)]:
        try: rows.append((name, *timed(f, *args)))
        except Exception as e: print(f"{name}: failed — {type(e).__name__}: {e}")
    print(f"\nlogistic regression on digits: {N_TRAIN} train × {N_TEST} test scores, λ = {LAM}")
    print(f"{'method':26} {'seconds':>8} {'Spearman vs ours':>17} {'Pearson':>8} {'time ÷ ours':>12}")
    for name, s, t in rows:
        rho = scipy.stats.spearmanr(s.flatten().numpy(), ref.flatten().numpy())[0]
        r = np.corrcoef(s.flatten().numpy(), ref.flatten().numpy())[0, 1]
        print(f"{name:26} {t:8.2f} {rho:17.4f} {r:8.4f} {t / t_ref:12.2f}")

if __name__ == '__main__': main()
