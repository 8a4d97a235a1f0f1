"""Loss functions of the methods, each a tested module (equations cited in each file)."""

from ssl3d.methods.losses.cmcv import CMCVLoss, cross_modality_ce, cross_view_triplet
from ssl3d.methods.losses.cmic import (
    CMICLoss, category_contrastive, category_triplet, cmic_triplet, instance_contrastive, instance_triplet,
)
from ssl3d.methods.losses.crosspoint import CrossPointLoss, nt_xent
from ssl3d.methods.losses.gmm import GMMParams, ParametricBottleneckLoss, gmm_log_likelihood, gmm_parameters
from ssl3d.methods.losses.switchvae import (
    SwitchVAELoss, beta_tc_kl, gaussian_kl, kl_anneal_weight, latent_contrastive, weighted_bce,
)

__all__ = [
    "CMCVLoss", "CMICLoss", "CrossPointLoss", "GMMParams", "ParametricBottleneckLoss", "SwitchVAELoss", "beta_tc_kl",
    "category_contrastive", "category_triplet", "cmic_triplet", "cross_modality_ce", "cross_view_triplet",
    "gaussian_kl", "gmm_log_likelihood", "gmm_parameters", "instance_contrastive", "instance_triplet",
    "kl_anneal_weight", "latent_contrastive", "nt_xent", "weighted_bce",
]
