"""modelsync: keeps a model server on the right revision of its models."""

__version__ = "0.1.0"
__all__ = ["__version__"]
