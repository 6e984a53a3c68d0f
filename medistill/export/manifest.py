"""SHA-256 manifest of a package, in ``sha256sum`` format so ``sha256sum -c MANIFEST.sha256`` checks it too.

One line per file, ``<64 hex digits>  <relative path>``, sorted by path; the manifest lists every
file of the package except itself.
"""
from __future__ import annotations

from pathlib import Path

from ..atomic_io import atomic_write_text
from ..data.errors import DataError
from ..data.file_io import file_digest

MANIFEST_NAME = "MANIFEST.sha256"


class ManifestError(DataError):
    """A package's files do not match its manifest (tampered, truncated, missing or extra files)."""


def sha256_file(path: Path) -> str:
    return file_digest(path, "sha256")


def package_files(folder: Path) -> list[str]:
    """Relative paths (POSIX) of every file under ``folder`` except the manifest, sorted."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if p.is_file() and p.name != MANIFEST_NAME)


def write_manifest(folder) -> Path:
    """Hash every file of ``folder`` into ``folder/MANIFEST.sha256``; returns its path."""
    folder = Path(folder)
    lines = [f"{sha256_file(folder / name)}  {name}" for name in package_files(folder)]
    return atomic_write_text(folder / MANIFEST_NAME, "\n".join(lines) + "\n")


def read_manifest(folder: Path) -> dict[str, str]:
    """{relative path: sha256} from the manifest; ManifestError if it is missing or malformed."""
    path = folder / MANIFEST_NAME
    if not path.exists():
        raise ManifestError(f"{folder}: missing {MANIFEST_NAME}; without it the package cannot be verified. "
                            "Ask the sender for the complete package.")
    entries = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ManifestError(f"{path}:{number}: malformed line {line!r} (expected '<sha256>  <file>')")
        entries[name] = digest
    return entries


def verify_manifest(folder) -> dict[str, str]:
    """Check every file against the manifest; returns it. ManifestError names the first bad file.

    Errors: a listed file missing, a file whose SHA-256 differs (modified or corrupted), a file
    present but not listed (added after export).
    """
    folder = Path(folder)
    entries = read_manifest(folder)
    for name, digest in entries.items():
        path = folder / name
        if not path.is_file():
            raise ManifestError(f"{folder}: file '{name}' is listed in {MANIFEST_NAME} but missing")
        actual = sha256_file(path)
        if actual != digest:
            raise ManifestError(f"{folder}: file '{name}' does not match {MANIFEST_NAME} (SHA-256 {actual}, "
                                f"manifest {digest}): it was modified or corrupted after export")
    extra = [name for name in package_files(folder) if name not in entries]
    if extra:
        raise ManifestError(f"{folder}: file(s) not in {MANIFEST_NAME}: {', '.join(extra)}; "
                            "they were added after export")
    return entries
