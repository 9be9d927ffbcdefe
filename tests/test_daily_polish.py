"""Small things a researcher meets on the first day: readable help, messages that name the option
or the way out, DARTS-PT's projection lines, a download's URL, plots that explain themselves."""

import os
import re

import matplotlib
import matplotlib.pyplot
import numpy as np
import pytest
import torch
from flatarch.reference_spaces.darts.geometry import DartsSpace as DartsGeometry
from flatarch.reference_spaces.darts.geometry import genotype_to_arch, neighbour_bound
from flatarch.reference_spaces.darts.known import KNOWN_GENOTYPES
from flatarch.reference_spaces.data import DataError, load_dataset
from flatarch.reference_spaces.engine import SearchConfig, SearchError, plot, reporting, search

from flatarch.cli import main

matplotlib.use("Agg")
TINY = SearchConfig(dataset="digits", subset=48, batch_size=8, channels=4, cells_per_stage=1, epochs=2,
                    max_batches=2, progress=False, plot=False, seed=3)


def test_geometry_darts_refuses_more_samples_than_neighbours_at_once(tmp_path, capsys):
    moves = {move.arch for move in DartsGeometry().moves(genotype_to_arch(KNOWN_GENOTYPES["DARTS_V2"]))}
    assert neighbour_bound(KNOWN_GENOTYPES["DARTS_V2"], 1) == len(moves) == 264  # 2 cells x (8 x 6 + 84)
    out = str(tmp_path / "g")
    assert main(["geometry", "darts", "--genotype", "DARTS_V2", "--samples", "100000", "--out", out]) == 2
    err = capsys.readouterr().err
    assert "--samples 100000 is more than the 264 distinct radius-1 neighbours" in err and err.count("\n") == 1
    assert not (tmp_path / "g").exists()
    assert main(["geometry", "darts", "--genotype", "DARTS_V2", "--samples", "3", "--cells", "normal",
                 "--out", str(tmp_path / "g")]) == 0


def test_geometry_help_is_plain_text(capsys):
    with pytest.raises(SystemExit):
        main(["geometry", "--help"])
    out = capsys.readouterr().out
    assert "``" not in out and "flatarch geometry darts --genotype FILE|NAME" in out


@pytest.mark.slow  # ~80 s: 28 tuning epochs of a DARTS-space supernet; projection_lines' own test is quick
def test_darts_pt_projection_lines_say_what_each_node_keeps(capsys):
    search(TINY, method="darts-pt", space="darts", epochs=1, projection_interval=1, tune_epochs=None)
    out = capsys.readouterr().out
    ops = re.findall(r"projection before epoch \d+: operation: (normal|reduce) cell, edge \d<-\d keeps \w+", out)
    nodes = re.findall(r"projection before epoch \d+: topology: (normal|reduce) cell, node (\d) keeps (\d<-\d), "
                       r"(\d<-\d); dropped ([\d<\-, ]+)\n", out)
    assert len(ops) == 28 and len(nodes) == 2 * 3  # 14 edges per cell; the nodes with more than 2 inputs
    for _, node, *kept_and_dropped in nodes:
        edges = [e for part in kept_and_dropped for e in part.split(", ")]
        assert sorted(e.split("<-")[1] for e in edges) == [str(i) for i in range(int(node))]


def test_projection_lines_of_one_node_dropping_two_edges():
    records = [{"kind": "topology", "cell": "normal", "node": 3, "edge": e} for e in (9, 11)]
    nodes = {"normal": [[0, 1], [2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12, 13]]}
    names = {"normal": [f"{t + 2}<-{s}" for t in range(4) for s in range(t + 2)]}
    assert reporting.projection_lines(records, nodes, names) == [
        "topology: normal cell, node 5 keeps 5<-1, 5<-3, 5<-4; dropped 5<-0, 5<-2"]
    nb201 = [{"kind": "op", "cell": "cell", "edge_name": "3<-2", "chosen": "skip_connect"}]  # its one group: "cell"
    assert reporting.projection_lines(nb201, {}, {}) == ["operation: cell, edge 3<-2 keeps skip_connect"]


def test_select_final_with_darts_pt_names_its_only_choice():
    with pytest.raises(SearchError, match=r"always runs with --select projection \(its only valid choice: it reports "
                                          r"the genotype its projection phase picks.*\), not final; drop --select"):
        SearchConfig(method="darts-pt", select="final").resolved({})


def test_a_failed_download_names_the_url_to_fetch(tmp_path, monkeypatch):
    import torchvision

    def offline(*args, **kwargs):
        raise RuntimeError("no network")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", type("CIFAR10", (), {"url": torchvision.datasets.CIFAR10.url,
                                                                              "__init__": offline}))
    with pytest.raises(DataError, match=re.escape(f"fetch {torchvision.datasets.CIFAR10.url} by hand")):
        load_dataset("cifar10", str(tmp_path), download=True)


def test_python_search_documents_that_it_writes_only_with_out():
    import flatarch

    assert "Writes nothing unless ``out`` is given" in flatarch.search.__doc__


def _figure(monkeypatch, history, **kwargs):
    drawn = {}
    monkeypatch.setattr(plot, "atomic_save_figure", lambda fig, path, **kw: drawn.setdefault("fig", fig))
    monkeypatch.setattr(matplotlib.pyplot, "close", lambda fig: None)
    plot.plot_history(history, "unused.png", **kwargs)
    return drawn["fig"]


def test_search_plot_explains_itself(monkeypatch):
    result = search(TINY, optimizer="first-order")
    initial = {"arch_alpha": torch.zeros(6, 5).tolist()}
    fig = _figure(monkeypatch, result.history, initial=initial, reference=result.reference,
                  labels={"arch_alpha": ("cell", ["a", "b", "c", "d", "e"], [f"edge {i}" for i in range(6)])})
    panels = [ax for ax in fig.axes if ax.get_title().startswith("cell")]
    assert len(panels) == 6 and all(ax.get_ylabel() == "op probability" for ax in panels)
    assert all(list(ax.get_lines()[0].get_xdata()) == [0, 1, 2] for ax in panels)  # epoch 0: the initial alphas
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["a", "b", "c", "d", "e"]  # one shared legend
    sharp = next(ax for ax in fig.axes if ax.get_title() == "sharpness of the alpha step")
    assert not sharp.get_visible()  # first-order: no perturbed step, no empty panel
    bench = next(ax for ax in fig.axes if ax.get_title() == "genotype's benchmark accuracy")
    levels = {round(line.get_ydata()[0], 2) for line in bench.get_lines() if len(set(line.get_ydata())) == 1}
    assert {round(v, 2) for v in result.reference["optimum"].values()} <= levels
    assert {round(v, 2) for v in result.reference["all-skip"].values()} <= levels
    assert {"optimum", "all-skip"} <= {t.get_text() for t in bench.get_legend().get_texts()}


def test_darts_genotype_picture_numbers_nodes_as_the_search_plot(tmp_path, monkeypatch):
    from flatarch.reference_spaces.darts import plots

    texts = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: texts.extend(t.get_text() for ax in fig.axes
                                                                       for t in ax.texts))
    plots.plot_genotype(KNOWN_GENOTYPES["DARTS_V2"], os.path.join(tmp_path, "g.png"))
    assert {"2", "3", "4", "5"} <= set(texts) and "0" not in texts




def test_the_neighbour_histograms_legend_names_every_element(tmp_path, monkeypatch):
    from flatarch.geometry import plots as geometry_plots

    figures = []
    monkeypatch.setattr(geometry_plots, "_save", lambda fig, path, dpi=80: figures.append(fig))
    panels = {(tier, r): (np.array([90.0, 91.0]), (88.0, 92.0)) for tier in "AB" for r in (1, 2)}
    geometry_plots.neighbour_histograms(str(tmp_path / "n.png"), np.linspace(10, 94, 50), panels)
    (legend,) = [ax.get_legend() for ax in figures[0].axes if ax.get_legend()]  # one, shared by the panels
    assert [t.get_text() for t in legend.get_texts()] == [  # it said "radius 1" of every panel's neighbours
        "whole space", "neighbours at the panel's radius", "the tier's accuracy range"]
