"""The plugin's own test: ssl3d-bench's testing kit runs the checks every built-in method passes."""

from ssl3d.methods.testing import check_method
from ssl3d_pyg_method import PyGContrast


def test_pyg_contrast_meets_the_method_contract():
    check_method(PyGContrast)
