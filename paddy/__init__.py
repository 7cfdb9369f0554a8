"""paddy: a kit for Kaggle image-classification competitions, built on fastai and timm."""

__version__ = "0.1.0"
