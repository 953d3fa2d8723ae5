"""Checkpoint folders on disk and on the Hub: ``model.safetensors`` + ``config.json`` (+ ``README.md``).

File I/O only: this module knows nothing of model classes or the registry (it takes state dicts,
config dicts and duck-typed models), so the model base class can use it. Building a model from a
folder is :mod:`zoo.factory`'s job. :func:`resolve` finds the folder of ``name_or_path``, in order:

1. a local directory written by :func:`save_pretrained`;
2. ``<checkpoints>/<name>`` where ``<checkpoints>`` is ``$ZOO_CHECKPOINTS``, ``./checkpoints``, an
   installed wheel's ``<prefix>/share/tokenizer-zoo/checkpoints`` or the ``checkpoints/`` folder of a
   source checkout;
3. a Hugging Face Hub repo id (``owner/name``), downloaded through ``huggingface_hub``'s cache
   with ``revision`` pinning. ``$HF_ENDPOINT`` (read at call time) points at another Hub server.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from zoo.errors import CheckpointError
from zoo.device import resolve_device
from zoo.io import atomic_dir, atomic_write, atomic_write_text
from zoo.version import __version__

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
CARD_NAME = "README.md"
# safetensors metadata keys: the canonical config and the tensors' checksum (verified on load)
META_CONFIG = "zoo_config"
META_CHECKSUM = "zoo_checksum"


# -- save -------------------------------------------------------------------------------------------
def model_config_dict(model: Any) -> dict[str, Any]:
    """What ``config.json`` holds: family, variant name, config fields and the zoo version."""
    return {"family": model.family, "variant": model.name, "zoo_version": __version__,
            "config": dataclasses.asdict(model.config)}


def save_folder(directory: str | Path, state: dict[str, torch.Tensor], config: dict[str, Any], *,
                card: str | None = None) -> Path:
    """Write ``state`` to ``model.safetensors``, ``config`` to ``config.json`` (and ``card`` to
    ``README.md``) in ``directory``.

    The files change together: they are written into a new folder that then replaces ``directory``
    as a whole (:func:`zoo.io.atomic_dir`; other files already there are kept), so no failure leaves
    new weights beside an old config. The safetensors metadata holds the config and a checksum of
    the tensors, which :func:`read_config` and :func:`read_weights` verify.
    """
    directory = Path(os.path.abspath(directory))
    state = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    metadata = {"format": "pt", META_CONFIG: canonical_config(config), META_CHECKSUM: tensors_checksum(state)}

    def write(folder: Path) -> None:
        atomic_write(folder / WEIGHTS_NAME, lambda p: save_file(state, str(p), metadata=metadata))
        atomic_write_text(folder / CONFIG_NAME, json.dumps(config, indent=2) + "\n")
        if card is not None:
            atomic_write_text(folder / CARD_NAME, card)

    if Path.cwd() == directory or directory in Path.cwd().parents:  # cannot swap the working folder
        directory.mkdir(parents=True, exist_ok=True)
        write(directory)
    else:
        with atomic_dir(directory) as folder:
            write(folder)
    return directory


def canonical_config(config: dict[str, Any]) -> str:
    """The part of ``config.json`` that decides the computation (family and config fields), as
    canonical JSON: what the safetensors metadata stores and what a loaded config.json must match."""
    return json.dumps({"family": config.get("family"), "config": config.get("config")}, sort_keys=True)


def tensors_checksum(state: dict[str, torch.Tensor]) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes (in name order): "sha256:<hex>"."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().contiguous().cpu()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().data)
    return "sha256:" + h.hexdigest()


def read_metadata(path: Path) -> dict[str, str]:
    """The metadata of the safetensors file ``path`` (header only; {} when it has none)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path} is not a readable safetensors file (corrupt or truncated?): {e}") from None


def save_pretrained(model: Any, directory: str | Path, *, card: str | None = None) -> Path:
    """Save a zoo tokenizer (anything with ``state_dict()``, ``family``, ``name`` and a dataclass
    ``config``) as ``model.safetensors`` + ``config.json`` (+ ``README.md`` when ``card`` is given)."""
    return save_folder(directory, model.state_dict(), model_config_dict(model), card=card)


# -- load -------------------------------------------------------------------------------------------
def checkpoint_dirs() -> list[Path]:
    """Folders searched for ``<name>/`` checkpoints, in order."""
    dirs = []
    if os.environ.get("ZOO_CHECKPOINTS"):
        dirs.append(Path(os.environ["ZOO_CHECKPOINTS"]))
    dirs.append(Path.cwd() / "checkpoints")
    dirs += installed_checkpoint_dirs()
    dirs.append(Path(__file__).resolve().parents[1] / "checkpoints")
    return dirs


def installed_checkpoint_dirs() -> list[Path]:
    """Where a wheel puts the bundled checkpoints (pyproject's data-files): ``<prefix>/share/tokenizer-zoo/
    checkpoints`` of the environment, and of the user base for ``pip install --user``."""
    import site
    import sysconfig

    bases = [sysconfig.get_path("data"), site.getuserbase()]
    return [Path(b) / "share" / "tokenizer-zoo" / "checkpoints" for b in dict.fromkeys(bases) if b]


def resolve(name_or_path: str | Path, revision: str | None = None, *, cache_dir: str | Path | None = None,
            endpoint: str | None = None, token: str | None = None, local_files_only: bool = False) -> Path | None:
    """The save_pretrained folder of ``name_or_path`` (see the module docstring for where it looks),
    downloading a Hub repo into the cache; None when it is none of these (a registered name, say)."""
    path = Path(name_or_path)
    if path.is_dir():
        return path
    name = str(name_or_path)
    if not looks_like_repo_id(name) and (path.suffix or os.sep in name):
        raise CheckpointError(f"checkpoint directory {name!r} does not exist")
    for folder in checkpoint_dirs():
        if (folder / name / CONFIG_NAME).is_file():
            return folder / name
    if looks_like_repo_id(name):
        try:
            return download(name, revision=revision, cache_dir=cache_dir, endpoint=endpoint, token=token,
                            local_files_only=local_files_only)
        except CheckpointError as e:
            raise CheckpointError(f"{name!r} is not a local folder (no {Path(name).absolute()}); as a Hub repo "
                                  f"id: {e}") from None
    return None


def hub_unreachable(endpoint: str | None = None, timeout: float = 3.0) -> str | None:
    """None when a TCP connection to the Hub endpoint opens within ``timeout`` seconds (or when it
    cannot be tested here: a proxy is configured); else why not. Offline mode
    (``HF_HUB_OFFLINE=1``) counts as unreachable. Saves the client's minute of retries."""
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return "HF_HUB_OFFLINE is set"
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY")):
        return None
    url = urlparse(endpoint or os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host, port = url.hostname, url.port or (443 if url.scheme == "https" else 80)
    if not host:
        return f"endpoint {url.geturl()!r} names no host"
    result: list[str | None] = []

    def probe() -> None:  # in a thread: a name lookup ignores socket timeouts (resolvers wait ~25 s)
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(None)
        except OSError as e:
            result.append(f"{host}:{port}: {e.strerror or e}")

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return result[0] if result else f"{host}:{port}: no answer within {timeout:g} s"


def looks_like_repo_id(name: str) -> bool:
    """``owner/name``, not a relative or absolute path."""
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.startswith((".", "/"))


def download(repo_id: str, *, revision: str | None = None, cache_dir: str | Path | None = None,
             endpoint: str | None = None, token: str | None = None, local_files_only: bool = False,
             config_required: bool = True) -> Path:
    """Fetch ``config.json`` and ``model.safetensors`` of ``repo_id`` into the Hub cache; returns the folder."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError, \
        RevisionNotFoundError

    endpoint = endpoint or os.environ.get("HF_ENDPOINT") or None
    unreachable = None if local_files_only else hub_unreachable(endpoint)  # then only the cache can answer
    kwargs = dict(revision=revision, cache_dir=cache_dir, endpoint=endpoint, token=token,
                  local_files_only=local_files_only or unreachable is not None, library_name="tokenizer-zoo",
                  library_version=__version__)
    files = [WEIGHTS_NAME, CONFIG_NAME]
    got: list[str] = []
    for filename in files:
        try:
            got.append(hf_hub_download(repo_id, filename, **kwargs))
        except LocalEntryNotFoundError as e:  # a subclass of EntryNotFoundError: test it first
            why = f"the Hub cannot be reached: {unreachable}" if unreachable else f"no network? {e}"
            raise CheckpointError(f"cannot download {filename} of {repo_id!r} and it is not in the local cache "
                                  f"({why}; set HF_ENDPOINT or pre-download it)") from None
        except EntryNotFoundError:
            if filename == CONFIG_NAME and not config_required:
                continue
            raise CheckpointError(f"Hub repo {repo_id!r} (revision {revision or 'main'}) has no {filename}; "
                                  f"a zoo checkpoint needs {WEIGHTS_NAME} and {CONFIG_NAME}") from None
        except RevisionNotFoundError:
            raise CheckpointError(f"Hub repo {repo_id!r} has no revision {revision!r}") from None
        except RepositoryNotFoundError:
            raise CheckpointError(f"Hub repo {repo_id!r} not found (or private without a token)") from None
    return Path(got[0]).parent


def read_config(directory: Path) -> dict[str, Any]:
    """``directory/config.json``, checked against the config stored in the weights' metadata when
    the weights have one (checkpoints saved before it existed load without the check)."""
    cfg_path = directory / CONFIG_NAME
    if not cfg_path.is_file():
        raise CheckpointError(f"{directory} has no {CONFIG_NAME}; expected a folder written by save_pretrained")
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{cfg_path} is not valid JSON: {e}") from None
    if not isinstance(cfg, dict) or not {"family", "config"} <= set(cfg):
        raise CheckpointError(f"{cfg_path} is not a zoo config (needs 'family' and 'config' keys)")
    weights = directory / WEIGHTS_NAME
    stored = read_metadata(weights).get(META_CONFIG) if weights.is_file() else None
    if stored is not None and stored != canonical_config(cfg):
        raise CheckpointError(f"{cfg_path} disagrees with the config stored in {WEIGHTS_NAME} "
                              f"({_config_diff(json.loads(stored), cfg)}): the folder was edited or mixes two "
                              "saves. Restore config.json (the weights' own config is in their metadata, key "
                              f"{META_CONFIG!r}) or save the model again")
    return cfg


def _config_diff(stored: dict[str, Any], cfg: dict[str, Any]) -> str:
    a = {"family": stored.get("family"), **(stored.get("config") or {})}
    b = {"family": cfg.get("family"), **(cfg.get("config") or {})}
    diff = [f"{k}: config.json {b.get(k, '(missing)')!r}, weights {a.get(k, '(missing)')!r}"
            for k in sorted(set(a) | set(b)) if a.get(k, "(missing)") != b.get(k, "(missing)")]
    return "; ".join(diff[:5]) + (f"; and {len(diff) - 5} more" if len(diff) > 5 else "") if diff else "field types differ"


def read_weights(path: Path, map_location: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Load a safetensors file (on the CPU, then onto ``map_location``); a missing, corrupt or
    truncated file, or one whose tensors do not match the checksum in its metadata (a flipped
    byte), raises :class:`CheckpointError`; a device that is not available here, InputError."""
    device = resolve_device(map_location)
    if not path.is_file():
        raise CheckpointError(f"missing weights file {path}")
    metadata = read_metadata(path)
    try:
        state = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path} is not a readable safetensors file (corrupt or truncated?): {e}") from None
    expected = metadata.get(META_CHECKSUM)
    if expected is not None and tensors_checksum(state) != expected:
        raise CheckpointError(f"{path} is corrupt: its tensors do not match the checksum saved with them "
                              "(a changed byte on disk or in transfer); download or copy it again")
    return state if device.type == "cpu" else {k: v.to(device) for k, v in state.items()}


def load_state(model: torch.nn.Module, state: dict[str, torch.Tensor], *, source: str) -> None:
    """``load_state_dict(strict=True)`` with a readable error listing missing, unexpected and
    mis-shaped keys."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {missing[:3]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[:3]})")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatches (e.g. {shapes[:3]})")
        raise CheckpointError(f"weights in {source} do not match {type(model).__name__} "
                              f"{getattr(model, 'name', '')}: " + "; ".join(parts))
    model.load_state_dict(state, strict=True)


# -- share ------------------------------------------------------------------------------------------
def push_to_hub(model: Any, repo_id: str, *, card: str | None = None, private: bool | None = None,
                token: str | None = None, revision: str | None = None, commit_message: str | None = None,
                endpoint: str | None = None) -> str:
    """Upload weights, config and ``card`` (``README.md``; the model's ``push_to_hub`` renders one)
    to ``repo_id``; returns the commit id."""
    import tempfile

    from huggingface_hub import HfApi

    endpoint = endpoint or os.environ.get("HF_ENDPOINT") or None
    api = HfApi(endpoint=endpoint, token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        save_pretrained(model, tmp, card=card)
        info = api.upload_folder(repo_id=repo_id, folder_path=tmp, revision=revision,
                                 commit_message=commit_message or f"Upload {model.name} (tokenizer-zoo {__version__})")
    return info.oid
