"""ocdlib: cross-representation distillation for pose estimation (OCD, TCD, reduced heads)."""

__version__ = "0.1.0"
