"""Framework pieces every layer uses (``ssl3d.core``): errors, and later config, registry, io, seeding.

``methods/`` and ``datasets/`` import framework code from here, never from ``ssl3d.bench``.
"""
