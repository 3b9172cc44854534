"""The old place of :mod:`lstm_pipeline.registry.bundle`, for model versions registered
before the layered layout: their ``serving.py`` imports ``lstm_pipeline.bundle``.
Nothing in the library imports this module.
"""

from lstm_pipeline.registry.bundle import ModelBundle

__all__ = ["ModelBundle"]
