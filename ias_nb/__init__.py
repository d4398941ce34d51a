"""ias_nb: Influence-Aligned Steering — activation steering and training-data influence under one first-order lens.

The public names, importable from the package (`from ias_nb import steer`); each lives in the chapter named beside it:

- steering (`10_steering`): `steer`, `caa_vector`, `ias_vector`, `contrast_update`, `resolve_layer`, `chat_prompts`,
  `chat_pairs`; the IAS solve itself, `ias` (`03_duality`), and `directional_alignment` γ_v (`00_linalg`);
- vectors and their formats (`10_steering`): `SteeringVector` (safetensors), `export_gguf`/`import_gguf` (llama.cpp,
  repeng's GGUF), `to_steering_vectors`/`from_steering_vectors`, `to_repeng`/`from_repeng`;
- attribution (`07_attribution`, `11_corpus`): `steer_to_documents`, `DocumentAttribution`, `attribution_scores`,
  `ATTRIBUTION_METHODS`, `document_scores`, `steer_query`, `Corpus`, the preconditioners `identity_preconditioner`,
  `cg_preconditioner`, `ekfac_preconditioner`, and `steering_to_measure`/`measure_to_steering`;
- the gradient index (`12_index`): `build_index`, `GradientIndex`;
- distillation of a fine-tune into a steering vector (`10_steering`; jointly over layers, `10b_distill`):
  `Distillation`, `evaluate_distillation`, `parameter_delta`, `lora_delta`, `distill_joint` (the one-layer solve is
  `ias_nb.steering.distill`: the name `ias_nb.distill` is chapter 10b's module);
- loaders (`04_models`): `load_causal_lm`, `load_smollm2`, `load_tiny_gpt2`.

The command line is `ias` (`ias_nb.cli`, chapter `14_cli`). nbdev_export rewrites only the version line below
(settings.ini: put_version_in_init); the rest of this file is written by hand.
"""
__version__ = "0.1.0"

from .linalg import directional_alignment
from .duality import ias
from .steering import (steer, SteeringVector, caa_vector, contrast_update, ias_vector, chat_prompts, chat_pairs,
                       resolve_layer, export_gguf, import_gguf, to_steering_vectors, from_steering_vectors, to_repeng,
                       from_repeng, Distillation, evaluate_distillation, parameter_delta, lora_delta)
from .distill import distill_joint
from .attribution import steering_to_measure, measure_to_steering
from .corpus import (steer_to_documents, DocumentAttribution, attribution_scores, ATTRIBUTION_METHODS, document_scores,
                     steer_query, Corpus, identity_preconditioner, cg_preconditioner, ekfac_preconditioner)
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
    'steer_to_documents', 'DocumentAttribution', 'attribution_scores', 'ATTRIBUTION_METHODS', 'document_scores',
    'steer_query', 'Corpus', 'identity_preconditioner', 'cg_preconditioner', 'ekfac_preconditioner',
    'steering_to_measure', 'measure_to_steering',
    # the gradient index
    'build_index', 'GradientIndex',
    # distillation
    'Distillation', 'evaluate_distillation', 'parameter_delta', 'lora_delta', 'distill_joint',
    # loaders
    'load_causal_lm', 'load_smollm2', 'load_tiny_gpt2',
]
