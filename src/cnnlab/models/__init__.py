"""The architectures. Importing this package registers every family with the registry."""

from . import resnet  # noqa: F401  (registers the family)
from .registry import closest_models, create_model, describe_models, list_models, model_family, register

__all__ = ["closest_models", "create_model", "describe_models", "list_models", "model_family", "register"]
