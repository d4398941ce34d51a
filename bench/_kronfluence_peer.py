"""kronfluence's own pairwise EK-FAC scores, run as a PEER method beside ias_nb's corpus scoring (bench/lds.py,
bench/corpus_throughput.py).

Everything shared with the library comes from `ias_nb.corpus`: the documents' right-padded batch (`right_padded`),
its rows dataset and trimming collate (`RowsDataset`, `trim_padding`), the covered nn.Linear layers (`linear_modules`) and
the kronfluence Task whose train loss is each document's mean next-token loss (`document_task`). What is here:

- `DocumentTask(modules, measurement)`: that Task with a measurement kronfluence can score against, either a query
  text's mean next-token loss ('loss') or the steer's functional f_s = Σ_x ⟨t_x, last-token logits of x⟩ ('steer');
- `kronfluence_scores(...)`: kronfluence fits its EK-FAC factors on the corpus and computes its pairwise scores
  ⟨(H+λI)⁻¹∇m, ∇ℓ(z)⟩, summed over the query rows.
"""
import copy, tempfile
from typing import Optional, Sequence
import torch
from torch import nn, Tensor
from ias_nb.corpus import linear_modules, document_task, right_padded, RowsDataset, trim_padding

__all__ = ['DocumentTask', 'kronfluence_scores']

def _steer_rows(probe_batch:dict, t:Tensor) -> list:
    "Query rows for kronfluence: one probe (trimmed by `trim_padding`) with its target shift t_x on the last-token logits."
    return [dict(input_ids=probe_batch['input_ids'][i], attention_mask=probe_batch['attention_mask'][i], t=t[i])
            for i in range(len(t))]

def DocumentTask(modules:Sequence[str], measurement:str='loss'):
    "ias_nb.corpus's kronfluence Task (same train loss) measuring a query text's loss ('loss') or f_s ('steer')."
    if measurement not in ('loss', 'steer'): raise ValueError(f"measurement must be 'loss' or 'steer', got {measurement!r}")
    class PeerTask(type(document_task(modules))):
        def compute_measurement(self, batch, model):
            if measurement == 'loss': return super().compute_measurement(batch, model)   # Σ query texts' mean loss
            ids, am = batch['input_ids'], batch['attention_mask']       # f_s: Σ_x ⟨t_x, last-token logits⟩
            logits = model(input_ids=ids, attention_mask=am).logits
            return (logits[torch.arange(len(ids)), am.sum(1) - 1] * batch['t']).sum()
    return PeerTask()

def _analyzer(model, task, out):
    from kronfluence.analyzer import Analyzer, prepare_model
    from kronfluence.utils.dataset import DataLoaderKwargs
    m = prepare_model(copy.deepcopy(model), task)            # kronfluence wraps modules in place: work on a copy
    an = Analyzer(analysis_name='ias_nb', model=m, task=task, output_dir=out, disable_tqdm=True, disable_model_save=True)
    an.set_dataloader_kwargs(DataLoaderKwargs(collate_fn=trim_padding))
    return an

def kronfluence_scores(
    model:nn.Module, tokenizer, docs:Sequence[str], damping:float,
    queries:dict,                     # {'texts': [...]} (loss) or {'probes': batch, 't': Tensor k×V} (f_s)
    modules:Optional[Sequence[str]]=None, batch_size:int=8, samples:int=1, max_length:Optional[int]=None,
) -> Tensor:
    "kronfluence's pairwise EK-FAC scores ⟨(H+λI)⁻¹∇m, ∇ℓ(z)⟩ summed over the query rows: Tensor (len(docs),)."
    from kronfluence.arguments import FactorArguments, ScoreArguments
    modules = linear_modules(model, modules)
    kind = 'loss' if 'texts' in queries else 'steer'
    f64 = dict(activation_covariance_dtype=torch.float64, gradient_covariance_dtype=torch.float64,
               eigendecomposition_dtype=torch.float64, lambda_dtype=torch.float64)
    train = right_padded(tokenizer, docs, max_length)
    with tempfile.TemporaryDirectory() as out:
        an = _analyzer(model, DocumentTask(modules, kind), out)
        an.fit_all_factors(factors_name='ekfac', dataset=RowsDataset(train, samples), per_device_batch_size=batch_size,
                           factor_args=FactorArguments(strategy='ekfac', **f64), overwrite_output_dir=True)
        q = (RowsDataset(right_padded(tokenizer, queries['texts'], max_length)) if kind == 'loss'
             else _steer_rows(queries['probes'], queries['t']))
        an.compute_pairwise_scores(scores_name='s', factors_name='ekfac', query_dataset=q, train_dataset=RowsDataset(train),
                                   per_device_query_batch_size=len(q), per_device_train_batch_size=batch_size,
                                   score_args=ScoreArguments(damping_factor=damping, precondition_dtype=torch.float64,
                                                             score_dtype=torch.float64, per_sample_gradient_dtype=torch.float64),
                                   overwrite_output_dir=True)
        return an.load_pairwise_scores('s')['all_modules'].double().sum(0)
