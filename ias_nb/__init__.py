"""ias_nb: Influence-Aligned Steering — activation steering and training-data influence under one first-order lens.

The public names, importable from the package (`from ias_nb import steer`); each lives in the chapter named beside it:

- steering (`10_steering`): `steer`, `caa_vector`, `ias_vector`, `contrast_update`, `chat_prompts`, `chat_pairs`;
  layers by name, index or depth, `resolve_layer` (`04a_lm`); the IAS solve itself, `ias` (`03_duality`), and
  `directional_alignment` γ_v (`00_linalg`);
- vectors and their formats: `SteeringVector` (safetensors, `10_steering`); `export_gguf`/`import_gguf` (llama.cpp,
  repeng's GGUF), `to_steering_vectors`/`from_steering_vectors`, `to_repeng`/`from_repeng` (`10a_formats`);
- attribution: `steering_to_measure`/`measure_to_steering` (`07_attribution`); `document_scores`, `Corpus`
  (`11_corpus`); the preconditioners `identity_preconditioner`, `cg_preconditioner`, `ekfac_preconditioner`
  (`11a_precondition`); `steer_query`, `steer_to_documents`, `DocumentAttribution` (`11b_trace`);
  `attribution_scores`, `ATTRIBUTION_METHODS`, `data_report`, `DataReport` (`11c_ranking`);
- the gradient index (`12_index`): `build_index`, `GradientIndex`;
- distillation of a fine-tune into steering vectors (`10b_distill`): `Distillation`, `evaluate_distillation`,
  `parameter_delta`, `lora_delta`, `distill_joint` (the one-layer solve is the function `ias_nb.distill.distill`;
  `ias_nb.distill` names the module);
- loaders (`04_models`): `load_causal_lm`, `load_smollm2`, `load_tiny_gpt2`.

The command line is `ias` (`ias_nb.cli`, chapter `14_cli`). nbdev_export rewrites only the version line below
(settings.ini: put_version_in_init); the rest of this file is written by hand.
"""
__version__ = "0.1.0"

from .linalg import directional_alignment
from .duality import ias
from .lm import resolve_layer
from .steering import steer, SteeringVector, caa_vector, contrast_update, ias_vector, chat_prompts, chat_pairs
from .formats import export_gguf, import_gguf, to_steering_vectors, from_steering_vectors, to_repeng, from_repeng
from .distill import Distillation, evaluate_distillation, parameter_delta, lora_delta, distill_joint
from .attribution import steering_to_measure, measure_to_steering
from .corpus import document_scores, Corpus
from .precondition import identity_preconditioner, cg_preconditioner, ekfac_preconditioner
from .trace import steer_to_documents, DocumentAttribution, steer_query
from .ranking import attribution_scores, ATTRIBUTION_METHODS, data_report, DataReport
from .index import build_index, GradientIndex
from .models import load_causal_lm, load_smollm2, load_tiny_gpt2

__all__ = [
    # steering
    'steer', 'caa_vector', 'ias_vector', 'contrast_update', 'resolve_layer', 'chat_prompts', 'chat_pairs', 'ias',
    'directional_alignment',
    # vectors and formats
    'SteeringVector', 'export_gguf', 'import_gguf', 'to_steering_vectors', 'from_steering_vectors', 'to_repeng',
    'from_repeng',
    # attribution
    'steer_to_documents', 'DocumentAttribution', 'attribution_scores', 'ATTRIBUTION_METHODS', 'data_report', 'DataReport', 'document_scores',
    'steer_query', 'Corpus', 'identity_preconditioner', 'cg_preconditioner', 'ekfac_preconditioner',
    'steering_to_measure', 'measure_to_steering',
    # the gradient index
    'build_index', 'GradientIndex',
    # distillation
    'Distillation', 'evaluate_distillation', 'parameter_delta', 'lora_delta', 'distill_joint',
    # loaders
    'load_causal_lm', 'load_smollm2', 'load_tiny_gpt2',
]
