__version__ = "0.1.0"

# The public entry points, so that `from ias_nb import steer` works (nbdev_export rewrites only the line above).
from .duality import ias
from .steering import steer, SteeringVector, caa_vector, contrast_update, ias_vector, chat_prompts, chat_pairs, resolve_layer
