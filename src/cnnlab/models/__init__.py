"""The architectures, one module per family. Importing this package imports every family module,
which registers its variants with the registry."""

import importlib
import pkgutil

from .registry import (
    check_input_size,
    closest_models,
    create_model,
    dependent_tensors,
    describe_models,
    family_description,
    list_models,
    min_input_size,
    model_family,
    num_params,
    paper_recipe_of,
    recipe_of,
    register,
    size_in,
)

for _module in pkgutil.iter_modules(__path__):
    if _module.name not in ("registry", "recipe"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "check_input_size",
    "closest_models",
    "create_model",
    "dependent_tensors",
    "describe_models",
    "family_description",
    "list_models",
    "min_input_size",
    "model_family",
    "num_params",
    "paper_recipe_of",
    "recipe_of",
    "register",
    "size_in",
]
