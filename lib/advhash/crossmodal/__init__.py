"""Cross-modal (image-text) hashing and its adversarial samples (notebook 03).

- ``models.py``   ``CrossModalHashing``: an image network and a text network (DCMH's BoW -> 8192 -> K)
- ``dcmh.py``     DCMH (Jiang and Li, CVPR 2017): the objective, alternating training, ``fit_dcmh``
- ``ssah.py``     SSAH (Li et al., CVPR 2018): label, image and text networks, discriminators, ``fit_ssah``
- ``retrieval.py`` codes of both modalities; image->text, text->image (and intra-modal) mAP
- ``cmla.py``     CMLA (Li et al., NeurIPS 2019): inter/intra-modal adversarial samples and the distortion D
- ``adversarial_training.py``  DCMH+ / SSAH+ : fine-tuning on the training set augmented with CMLA samples
"""

from __future__ import annotations

from .adversarial_training import augmented_training_split, cmla_samples, fit_cmla_training
from .cmla import CMLA, cmla_distortion, cmla_inter_loss, cmla_intra_loss
from .dcmh import dcmh_batch_loss, dcmh_objective, fit_dcmh, label_similarity, split_digest, train_dcmh
from .models import CrossModalHashing, TextHashingModel
from .retrieval import TASKS, crossmodal_maps, encode_pairs
from .ssah import (LabelNetwork, SSAHImageNetwork, SSAHModel, SSAHTextNetwork, fit_ssah, ssah_network_loss,
                   ssah_pairwise_loss, train_ssah)

__all__ = ["CrossModalHashing", "TextHashingModel", "dcmh_objective", "dcmh_batch_loss", "label_similarity",
           "train_dcmh", "fit_dcmh", "split_digest", "TASKS", "encode_pairs", "crossmodal_maps",
           "CMLA", "cmla_distortion", "cmla_inter_loss", "cmla_intra_loss", "cmla_samples",
           "augmented_training_split", "fit_cmla_training", "SSAHModel", "LabelNetwork", "SSAHImageNetwork",
           "SSAHTextNetwork", "ssah_pairwise_loss", "ssah_network_loss", "train_ssah", "fit_ssah"]
