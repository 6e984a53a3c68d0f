"""Sharing a distilled set: a self-describing, checksummed package a receiving site can read and re-score.

``export_package(source, out)`` writes the package; ``load_package(dir)`` verifies its manifest and
reads it back as an :class:`~medistill.data.ImageSet`; ``evaluate_package`` re-scores it on the public
test split of its source dataset.
"""
from .manifest import MANIFEST_NAME, ManifestError, verify_manifest, write_manifest
from .package_reader import Package, is_package, load_package
from .package_writer import export_package
from .run_source import RunSource, load_run_source

__all__ = [
    "MANIFEST_NAME",
    "ManifestError",
    "Package",
    "RunSource",
    "export_package",
    "is_package",
    "load_package",
    "load_run_source",
    "verify_manifest",
    "write_manifest",
]
