"""Hashing models: torchvision backbones (and a small CNN) under a tanh(scale * z) hash head."""

from .backbones import BACKBONES, SmallCNN, build_backbone
from .hashing_model import (IMAGENET_MEAN, IMAGENET_STD, PRECISIONS, HashingModel, backbone_precision, binarize,
                            build_model, effective_precision, set_precision, with_scaled_hash_layer)

__all__ = ["BACKBONES", "SmallCNN", "build_backbone", "HashingModel", "binarize", "build_model",
           "with_scaled_hash_layer", "IMAGENET_MEAN", "IMAGENET_STD", "PRECISIONS", "effective_precision",
           "set_precision", "backbone_precision"]
