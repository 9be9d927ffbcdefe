"""Every ```python block of README.md and docs/*.md runs, so the documentation stays true.

The blocks of one page run in order in one namespace (a page builds on its earlier blocks), in a
temporary working directory, with the objects the pages call "yours" already there: ``model`` (a
search network of the original DARTS code, plain-tensor alphas and ``_loss``), a validation batch
``x, y`` / ``x_val, y_val``, the original scripts' ``args`` and ``parser``, and the names of their
training loop. A block preceded by ``<!-- not run: REASON -->`` needs a framework that is not a
dependency (NASLib, confopt) and is skipped by name; one preceded by ``<!-- run: slow -->`` runs
with the slow tests (``-m slow``).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest
import torch
from adapter_checks import make_batch, original_args, weight_sgd
from adapter_models import DartsNetwork
from torch import nn

import flatarch

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"(?:<!-- (?P<marker>not run: [^>]+|run: slow) -->\n)?```python\n(?P<code>.*?)```", re.S)


def blocks(page: Path) -> list[tuple[int, str | None, str]]:
    """``(line, marker, code)`` of each python block of ``page``."""
    text = page.read_text()
    return [(text[: m.start("code")].count("\n"), m.group("marker"), m.group("code")) for m in BLOCK.finditer(text)]


class DocsModel(DartsNetwork):
    """The original DARTS search network at toy size, with the loss names the docs' examples use."""

    def criterion_loss(self, input, target):
        return self._loss(input, target)


class FeaturesAndLogits(nn.Module):
    """A confopt-style model: ``forward`` returns ``(features, logits)``."""

    def __init__(self, model: DartsNetwork):
        super().__init__()
        self.model = model

    def forward(self, x):
        logits = self.model(x)
        return logits, logits

    def arch_parameters(self):
        return self.model.arch_parameters()


def namespace() -> dict:
    torch.manual_seed(0)
    model = DocsModel(4, 3, 3, nn.CrossEntropyLoss())
    (x, y), (x_train, y_train) = make_batch(0), make_batch(1)
    args = original_args(arch_update="a2m", rho=0.1, eps=0.01)
    return {
        "__name__": "__main__",  # the pages' `if __name__ == "__main__":` blocks run, as in a script
        "flatarch": flatarch, "torch": torch,
        "model": model, "x": x, "y": y, "x_val": x, "y_val": y, "epoch": 3,
        "args": args, "parser": argparse.ArgumentParser(), "search_space": FeaturesAndLogits(model),
        "input": x_train, "target": y_train, "input_search": x, "target_search": y,
        "lr": 0.025, "optimizer": weight_sgd(model),
    }


def run_page(page: Path, slow: bool, tmp_path, monkeypatch) -> int:
    monkeypatch.chdir(tmp_path)
    ns = namespace()
    ran = 0
    for line, marker, code in blocks(page):
        if marker is not None and marker.startswith("not run"):
            continue
        if marker == "run: slow" and not slow:
            continue
        try:
            exec(compile(code, f"{page.relative_to(ROOT)}:{line + 1}", "exec"), ns)
        except Exception as exc:
            raise AssertionError(f"{page.relative_to(ROOT)}, block at line {line + 1}: {type(exc).__name__}: "
                                 f"{exc}") from exc
        ran += 1
    return ran


@pytest.mark.parametrize("page", [p for p in PAGES if any(m is None for _, m, _ in blocks(p))], ids=lambda p: p.name)
def test_the_python_blocks_of_each_page_run(page, tmp_path, monkeypatch):
    assert run_page(page, False, tmp_path, monkeypatch) > 0


@pytest.mark.slow
@pytest.mark.parametrize("page", [p for p in PAGES if any(m == "run: slow" for _, m, _ in blocks(p))],
                         ids=lambda p: p.name)
def test_the_slow_python_blocks_run(page, tmp_path, monkeypatch):
    assert run_page(page, True, tmp_path, monkeypatch) > 0


def test_blocks_left_out_say_why_and_are_few():
    left_out = [(page.name, line, marker) for page in PAGES for line, marker, _ in blocks(page)
                if marker is not None and marker.startswith("not run")]
    assert all(len(marker) > len("not run: ") + 10 for _, _, marker in left_out)
    assert {name for name, _, _ in left_out} <= {"adapters.md"}, left_out  # only the frameworks we do not install
    assert sum(len(blocks(page)) for page in PAGES) >= 20  # the pattern still finds the blocks
