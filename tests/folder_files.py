"""What a folder holds, byte for byte: the tests' check that a refused or failed command loses nothing."""

import os


def file_bytes(folder) -> dict[str, bytes]:
    """``{relative path: bytes}`` of every file under ``folder``."""
    out = {}
    for base, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(base, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, folder)] = f.read()
    return out
