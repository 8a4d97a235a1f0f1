"""Shared backbones: PointNet, DGCNN (memory-aware EdgeConv), voxel CNNs, ResNet image encoders."""

from ssl3d.methods.backbones.dgcnn import DGCNN, DGCNN_PRESETS, EdgeConv
from ssl3d.methods.backbones.image import (
    TRUNK_DIMS, ImageEncoder, MultiViewEncoder, MultiViewVAEEncoder, resnet_trunk,
)
from ssl3d.methods.backbones.knn import knn_indices, neighbour_argmax
from ssl3d.methods.backbones.outputs import PointBackboneOutput
from ssl3d.methods.backbones.pointnet import PointNet, PointwiseMLP, SegmentationHead, TNet, transform_regularizer
from ssl3d.methods.backbones.voxel_cnn import VoxelDecoder, VoxelEncoder

__all__ = [
    "DGCNN", "DGCNN_PRESETS", "EdgeConv", "ImageEncoder", "MultiViewEncoder", "MultiViewVAEEncoder",
    "PointBackboneOutput", "PointNet", "PointwiseMLP", "SegmentationHead", "TNet", "TRUNK_DIMS", "VoxelDecoder",
    "VoxelEncoder", "knn_indices", "neighbour_argmax", "resnet_trunk", "transform_regularizer",
]
