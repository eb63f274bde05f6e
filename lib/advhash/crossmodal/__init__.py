"""Cross-modal (image-text) hashing and its adversarial samples (notebook 03).

- ``models.py``   ``CrossModalHashing``: an image network and a text network (DCMH's BoW -> 8192 -> K)
- ``dcmh.py``     DCMH (Jiang and Li, CVPR 2017): the objective, alternating training, ``fit_dcmh``
- ``ssah.py``     SSAH (Li et al., CVPR 2018): label, image and text networks, discriminators, ``fit_ssah``
- ``fitting.py``  what DCMH's and SSAH's trainers share: ``require_texts``, ``fit_cross_modal``
- ``retrieval.py`` codes of both modalities; image->text, text->image (and intra-modal) mAP
- ``cmla.py``     CMLA (Li et al., NeurIPS 2019): inter/intra-modal adversarial samples and the distortion D
- ``adversarial_training.py``  DCMH+ / SSAH+ : fine-tuning on the training set augmented with CMLA samples
- ``victims.py``  ``fit_crossmodal_victims``: DCMH, SSAH, DCMH+ and SSAH+ at every code length (notebook 03)
"""

from __future__ import annotations

from ..checkpoint import split_digest  # re-exported: its home is advhash.checkpoint, with the other naming helpers
from .adversarial_training import augmented_training_split, cmla_samples, fit_cmla_training
from .cmla import CMLA, cmla_distortion, cmla_inter_loss, cmla_intra_loss
from .dcmh import dcmh_batch_loss, dcmh_objective, fit_dcmh, train_dcmh
from .evaluation import (SnapshotMaker, protocol_scores, attack_table, clean_scores, clean_table, cmla_scores, cmla_snapshots,
                         crossmodal_curves, encode_models, encode_queries, encode_snapshots, paired_query_set,
                         published_attack_table, published_clean_table, tag_changes, tag_names, task_metrics)
from .models import CrossModalHashing, TextHashingModel
from .retrieval import TASKS, crossmodal_maps, encode_pairs
from .ssah import (LabelNetwork, SSAHImageNetwork, SSAHModel, SSAHTextNetwork, fit_ssah, ssah_network_loss,
                   ssah_pairwise_loss, train_ssah)
from .victims import fit_crossmodal_victims

__all__ = ["CrossModalHashing", "TextHashingModel", "dcmh_objective", "dcmh_batch_loss",
           "train_dcmh", "fit_dcmh", "split_digest", "TASKS", "encode_pairs", "crossmodal_maps",
           "CMLA", "cmla_distortion", "cmla_inter_loss", "cmla_intra_loss", "cmla_samples",
           "augmented_training_split", "fit_cmla_training", "SSAHModel", "LabelNetwork", "SSAHImageNetwork",
           "SSAHTextNetwork", "ssah_pairwise_loss", "ssah_network_loss", "train_ssah", "fit_ssah",
           "fit_crossmodal_victims", "SnapshotMaker", "paired_query_set", "encode_queries", "encode_models", "cmla_snapshots",
           "encode_snapshots", "cmla_scores", "clean_scores", "clean_table", "published_clean_table", "protocol_scores",
           "attack_table", "published_attack_table", "crossmodal_curves", "task_metrics", "tag_names", "tag_changes"]
