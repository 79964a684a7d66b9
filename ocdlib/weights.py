"""Backbone weights a config names (`model.pretrained`), and their identity.

`model.pretrained` is one of:

- "none": random initialisation (training from scratch);
- "imagenet": torchvision's ImageNet file, from the torch hub cache (never downloaded);
- the name of a kit pre-training committed in `ocdlib/pretrained/` (`<name>.pth`
  beside its record `<name>.json`, written by `python -m ocdlib pretrain`), e.g.
  "fractal_w32". A record may stand without its weights (a pre-training the kit
  compared but does not use): its runs keep their identity, and loading it says
  how to rebuild the weights;
- a path to a state_dict file (a `.pth` of torchvision's layout, or the `backbone.pth`
  of a pre-training run under `runs/pretrain/`).

The weights themselves are part of a run's identity: `weights_digest` is the SHA-256
of the file (for a kit pre-training, the digest its record holds, checked against
the file when it is loaded), and `Config.hash` hashes that digest in place of the
name, so a run from other weights is never served for this one, and a run from
scratch ("none") keeps the hash it always had.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

from .errors import ConfigError, MissingFileError

__all__ = [
    "KIT_WEIGHTS_DIR", "file_digest", "kit_record", "kit_weights_names", "kit_weights_with_files",
    "resolve_weights", "weights_digest",
]  # fmt: skip

KIT_WEIGHTS_DIR = Path(__file__).resolve().parent / "pretrained"
NO_FILE = ("", "none", "imagenet")


def kit_weights_names() -> list[str]:
    """The kit pre-trainings whose records are committed with the package."""
    return sorted(p.stem for p in KIT_WEIGHTS_DIR.glob("*.json"))


def kit_weights_with_files() -> list[str]:
    """The kit pre-trainings whose weights are committed beside their records."""
    return [n for n in kit_weights_names() if (KIT_WEIGHTS_DIR / f"{n}.pth").is_file()]


def _is_kit_name(pretrained: str) -> bool:
    return "/" not in pretrained and not pretrained.endswith((".pth", ".pt"))


def kit_record(name: str) -> dict:
    """The record of the committed kit pre-training `name` (config, digest, curve, machine)."""
    path = KIT_WEIGHTS_DIR / f"{name}.json"
    if not path.is_file():
        raise ConfigError(
            f"model.pretrained={name!r}: no kit pre-training of that name (those committed: "
            f"{kit_weights_names()}); give one of them, a path to a state_dict file, "
            "'imagenet' or 'none'"
        )
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}: not a valid pre-training record ({err})") from err


@functools.lru_cache(maxsize=64)
def _digest_of(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_digest(path: Path) -> str:
    """SHA-256 of a file (cached while its size and modification time stay the same)."""
    st = path.stat()
    return _digest_of(str(path.resolve()), st.st_size, st.st_mtime_ns)


def resolve_weights(pretrained: str) -> tuple[Path, str, dict | None]:
    """(file, its SHA-256, the kit record or None) of weights that are not "none"/"imagenet".

    A kit pre-training's file must match the digest in its record: a file replaced
    without its record would otherwise train runs under another run's identity.
    """
    if _is_kit_name(pretrained):
        record = kit_record(pretrained)
        path = KIT_WEIGHTS_DIR / f"{pretrained}.pth"
        if not path.is_file():
            raise MissingFileError(
                f"model.pretrained={pretrained!r}: the record {path.with_suffix('.json')} "
                f"has no weights beside it ({path.name}); restore it from git "
                f"(git checkout -- {path}) or rebuild it with: {record.get('command', '')}"
            )
        digest = file_digest(path)
        if digest != record["sha256"]:
            raise ConfigError(
                f"model.pretrained={pretrained!r}: {path} has SHA-256 {digest[:16]}..., its "
                f"record {path.with_suffix('.json').name} says {record['sha256'][:16]}...; "
                f"restore both from git, or rebuild them with: {record.get('command', '')}"
            )
        return path, digest, record
    path = Path(pretrained).expanduser()
    if not path.is_file():
        raise MissingFileError(
            f"model.pretrained={pretrained!r}: no such file. Give the path of a state_dict "
            f"(.pth), a kit pre-training ({kit_weights_names()}), 'imagenet' or 'none'"
        )
    return path, file_digest(path), None


def weights_digest(pretrained: str) -> str | None:
    """What identifies `model.pretrained` in a config's hash: None for "none" and
    "imagenet" (the name itself is hashed), else "sha256:<first 16 hex digits>"."""
    if pretrained in NO_FILE:
        return None
    if _is_kit_name(pretrained):
        return "sha256:" + kit_record(pretrained)["sha256"][:16]
    return "sha256:" + resolve_weights(pretrained)[1][:16]
