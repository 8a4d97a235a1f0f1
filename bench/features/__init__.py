"""What protocols embed: frozen features of a split (cached on disk), validation splits carved from
train, and the view subsets and distances the shape protocols share. Imports nothing else of bench."""

from ssl3d.bench.features.extract import extract_features

__all__ = ["extract_features"]
