"""Results name files portably: no absolute path of the machine that ran ``zoo eval`` ends up in
results/*.json or *.md (the data folder by name + content hash, weights by package path or name +
file hash, the repository's files relative to it)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from torch import nn

from conftest import make_image_folder
from zoo.evaluate import evaluate
from zoo.evaluate.common import REPO_ROOT, portable_path, portable_text

ABSOLUTE = re.compile(r"(?<![\w:/.~-])/(?:tmp|home|root|work|usr|var|opt|Users|mnt|private)\b[^\s\"')]*")


class Features(nn.Module):
    """(B, 3, H, W) -> (B, 4); its ``source`` names a file by absolute path, as the real FID loaders do."""

    def __init__(self, weights: Path):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.source = f"test features {weights} (mapped)"

    @torch.no_grad()
    def forward(self, x):
        return self.net(x.float().cpu()).double()


def test_portable_paths(tmp_path):
    weights = tmp_path / "inception.pt"
    weights.write_bytes(b"weights")
    assert portable_path(weights) == "inception.pt (sha256:" + __import__("hashlib").sha256(b"weights").hexdigest()[:12] + ")"
    assert portable_path(tmp_path / "data") == "data"
    assert portable_path(REPO_ROOT / "checkpoints" / "titok_nano_32") == "checkpoints/titok_nano_32"
    assert portable_path("/x/lib/python3.11/site-packages/pkg/w.pt") == "pkg/w.pt"
    assert portable_path(Path.home() / ".cache" / "nothing-here.pth") == "~/.cache/nothing-here.pth"
    text = f"Put w.pth at {tmp_path / 'w.pth'}. See https://example.org/a/b, rate 1/2."
    assert portable_text(text) == "Put w.pth at w.pth. See https://example.org/a/b, rate 1/2."


def test_eval_writes_no_absolute_paths(nano, tmp_path):
    folder = make_image_folder(tmp_path / "heldout", 3, size=32)
    weights = tmp_path / "fid.pt"
    weights.write_bytes(b"fid weights")
    out = tmp_path / "out" / "r.json"
    res = evaluate(nano, folder, out=out, batch_size=2, feature_extractor=Features(weights), pfid=False,
                   lpips=False, model_id=str(tmp_path / "my_model"), progress=False)
    for path in (out, out.with_suffix(".md")):
        text = path.read_text()
        assert str(tmp_path) not in text and not ABSOLUTE.search(text), ABSOLUTE.search(text)
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(res))
    assert saved["data"]["dir"] == "heldout" and saved["model"]["id"] == "my_model"
    assert saved["settings"]["fid_extractor"].startswith("test features fid.pt (sha256:")


def test_committed_results_are_portable():
    files = sorted((REPO_ROOT / "results").glob("*.json")) + sorted((REPO_ROOT / "results").glob("*.md"))
    for path in files:
        found = ABSOLUTE.search(path.read_text(encoding="utf-8"))
        assert found is None, f"{path.name} records the absolute path {found.group(0)}"
