"""DARTS-PT's topology projection against an independent transcription of darts-pt's loop.

ruocwang/darts-pt ``sota/cnn/projection.py`` ``project_edge`` (L83-100): while a node has more than
two candidate edges, every candidate is scored with that edge alone zeroed in
``get_projected_weights`` (the *decided* nodes' drops applied, this node's earlier drops not), and
the least harmful one (highest accuracy, ties to the later edge) leaves the candidate list; the
node's drops are zeroed only once it is decided (``model.project_edge``). The scorer here is a
random table over the set of zeroed edges, so every interaction between drops matters; a greedy
elimination (each drop zeroed at once, as flatarch did before) fails the comparison.
"""

import random

import pytest
import torch
from flatarch.reference_spaces.engine.projection import Projection, ProjectionState

#: the DARTS cell's nodes with more than two incoming edges (rows 2-4, 5-8, 9-13)
NODES = [[2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12, 13]]
NAMES = [f"e{e}" for e in range(14)]


def table_scorer(seed):
    """Accuracy as a random function of the set of zeroed rows of the ``normal`` weights."""
    rng, table = random.Random(seed), {}

    def accuracy(zeroed):
        key = frozenset(zeroed)
        if key not in table:
            table[key] = rng.choice([40.0, 50.0, 60.0, 70.0, 80.0])  # ties happen, as with real accuracies
        return table[key]

    def score(weights):
        return accuracy(e for e in range(14) if not weights["normal"][e].any())

    return accuracy, score


def repository_drops(edges, decided, accuracy, zero_each_drop=False):
    """darts-pt's loop; ``zero_each_drop`` turns it into a greedy elimination."""
    eids, drops = list(edges), []
    while len(eids) > 2:
        eid_todel, crit_extrema = None, None
        for eid in eids:
            crit = accuracy({*decided, *(drops if zero_each_drop else ()), eid})
            if crit_extrema is None or not crit < crit_extrema:
                crit_extrema, eid_todel = crit, eid
        eids.remove(eid_todel)
        drops.append(eid_todel)
    return drops


class GreedyProjection(Projection):
    """Each drop zeroed at once before the next is scored."""

    def project_node(self, state, group, nodes, weights, score, generator, edge_names):
        remaining = [n for n in range(len(nodes)) if n not in state.nodes_done[group]]
        node = remaining[int(torch.randint(len(remaining), (1,), generator=generator))]
        edges, records = list(nodes[node]), []
        while len(edges) > 2:
            scores = {}
            for edge in edges:
                masked = dict(state.apply(weights))
                masked[group] = masked[group].clone()
                masked[group][edge] = 0.0
                scores[edge] = score(masked)
            drop = max(reversed(edges), key=lambda e: scores[e])  # ties: the later edge
            edges.remove(drop)
            state.removed[group][drop] = True
            records.append({"kind": "topology", "cell": group, "node": node, "edge": drop, "scores": scores})
        state.nodes_done[group].append(node)
        return records


def check_against_the_repository(projection, tables=30):
    """Every node of every table decided as darts-pt's loop decides it, one node after another."""
    weights = {"normal": torch.softmax(torch.randn(14, 7, generator=torch.Generator().manual_seed(0)), -1)}
    for seed in range(tables):
        accuracy, score = table_scorer(seed)
        state = ProjectionState.empty({"normal": 14})
        generator = torch.Generator().manual_seed(seed)
        decided: list[int] = []
        for _ in NODES:
            records = projection.project_node(state, "normal", NODES, weights, score, generator, NAMES)
            node = records[0]["node"]
            expected = repository_drops(NODES[node], decided, accuracy)
            assert [r["edge"] for r in records] == expected, (seed, node)
            decided += expected
            assert [e for e in range(14) if state.removed["normal"][e]] == sorted(decided)
        assert sorted(state.nodes_done["normal"]) == [0, 1, 2]


def test_the_topology_projection_follows_darts_pts_loop():
    check_against_the_repository(Projection())


def test_a_greedy_elimination_fails_the_comparison():
    with pytest.raises(AssertionError):
        check_against_the_repository(GreedyProjection())


def test_each_drop_is_recorded_with_the_scores_it_was_chosen_by():
    accuracy, score = table_scorer(3)
    state = ProjectionState.empty({"normal": 14})
    weights = {"normal": torch.full((14, 7), 1 / 7)}
    records = Projection().project_node(state, "normal", [NODES[2]], weights, score, torch.Generator(), NAMES)
    assert len(records) == 3  # five edges down to two
    dropped = []
    for record in records:
        candidates = [e for e in NODES[2] if e not in dropped]
        assert record["scores"] == {NAMES[e]: accuracy({e}) for e in candidates}  # this node's drops still active
        assert record["chosen"] == NAMES[record["edge"]]
        dropped.append(record["edge"])
