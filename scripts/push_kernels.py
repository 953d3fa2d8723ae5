#!/usr/bin/env python
"""Upload the zoo's quantizer kernels to the Hugging Face Hub as a universal kernel repo.

The kernel lives in ``zoo/kernels/hub`` laid out as ``build/torch-universal/`` (``metadata.json``,
``__init__.py``, ``zoo_quantize/``) so that ``kernels.get_kernel(repo_id, version=...)`` loads it.
The zoo ships the same files as its built-in default; a newer kernel pushed here can be used
without upgrading the zoo::

    python scripts/push_kernels.py --repo-id tokenizer-zoo/zoo-quantize            # upload
    python scripts/push_kernels.py --repo-id me/zoo-quantize --dry-run             # list files only

and then ``zoo.kernels.kernelize_quantizers(model, "me/zoo-quantize", version=1)``.
Needs a Hub token with write access (``huggingface-cli login`` or ``HF_TOKEN``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SRC = ROOT / "zoo" / "kernels" / "hub"

CARD = """---
license: apache-2.0
tags:
- kernels
- kernel
---

# zoo-quantize

Fused Triton kernels of the tokenizer zoo's quantizers (universal build, torch + triton only):

- `nearest_code(x, codebook, metric)`: distance + argmin + gather in tiles, memory O(N + K),
  Euclidean or dot/cosine codes, fp32/bf16/fp16, ties to the lowest code index;
- `fsq_quantize(z, levels, symmetric=False, hard_clamp=False)`: FSQ rounding with id packing;
- `lfq_quantize(x, scale)`: LFQ sign with bit packing;
- `layers.NearestCode`, `layers.FSQRound`, `layers.LFQSign` for `kernels.kernelize`.

```python
from kernels import get_kernel
zq = get_kernel("{repo_id}", version={version})
ids, vectors = zq.nearest_code(x, codebook, "euclidean")
```
"""


def kernel_files(src: Path) -> list[Path]:
    """Files of the kernel repo, relative to ``src`` (no bytecode, no caches)."""
    out = []
    for path in sorted((src / "build").rglob("*")):
        rel = path.relative_to(src)
        if path.is_file() and "__pycache__" not in rel.parts and path.suffix not in (".pyc", ".pyo"):
            out.append(rel)
    return out


def kernel_version(src: Path) -> int:
    meta = json.loads((src / "build" / "torch-universal" / "metadata.json").read_text())
    return int(meta["version"])


def stage(src: Path, dest: Path, repo_id: str = "tokenizer-zoo/zoo-quantize") -> Path:
    """Copy the kernel repo to ``dest`` with a model card: what gets uploaded."""
    if dest.exists():
        shutil.rmtree(dest)
    for rel in kernel_files(src):
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / rel, dest / rel)
    (dest / "README.md").write_text(CARD.format(repo_id=repo_id, version=kernel_version(src)))
    return dest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo-id", default="tokenizer-zoo/zoo-quantize", help="Hub kernel repo (owner/name)")
    ap.add_argument("--src", type=Path, default=DEFAULT_SRC, help="kernel repo directory (default: the zoo's)")
    ap.add_argument("--private", action="store_true", help="create the repo as private")
    ap.add_argument("--dry-run", action="store_true", help="print the files that would be uploaded and stop")
    args = ap.parse_args(argv)

    version = kernel_version(args.src)
    files = kernel_files(args.src)
    print(f"kernel version {version}, {len(files)} files from {args.src}:")
    for rel in files:
        print(f"  {rel}")
    if args.dry_run:
        return 0

    import tempfile

    from huggingface_hub import HfApi

    api = HfApi()
    with tempfile.TemporaryDirectory() as tmp:
        staged = stage(args.src, Path(tmp) / "repo", args.repo_id)
        api.create_repo(args.repo_id, repo_type="kernel", private=args.private, exist_ok=True)
        # kernels resolves `version=N` to the branch `vN`: upload there, and to main for browsing
        api.create_branch(args.repo_id, repo_type="kernel", branch=f"v{version}", exist_ok=True)
        for revision in (f"v{version}", "main"):
            api.upload_folder(repo_id=args.repo_id, repo_type="kernel", folder_path=str(staged),
                              revision=revision, commit_message=f"zoo-quantize kernel v{version}")
    print(f"uploaded to {args.repo_id} (branch v{version}); load with "
          f"kernels.get_kernel({args.repo_id!r}, version={version})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
