"""ganforge: train and run generative networks for images."""

__version__ = "0.1.0"
