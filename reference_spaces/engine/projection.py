"""DARTS-PT's perturbation-based projection (Wang et al. 2021, ruocwang/darts-pt ``*/projection.py``).

After the supernet search, DARTS-PT tunes the supernet while it fixes the architecture one
decision at a time:

* **op projection** of an edge (each round: one random unprojected edge per group): for every op,
  set its mixing weight on that edge to 0 (nothing renormalised, the projected edges one-hot) and
  measure the accuracy on the whole validation split (BatchNorm in train mode, no gradient);
  keep the op whose removal hurts most (the lowest accuracy; ties: the lowest op index,
  ``project_op`` ``x < y``). The edge then stays one-hot.
* **topology projection** of a node (DARTS space; each round one random node with more than two
  incoming edges per group): while more than two edges remain, score each remaining edge with
  that edge's row alone zeroed and drop the edge whose removal hurts least (the highest
  accuracy; ties: the later edge, ``project_edge`` ``not x < y``). The edges dropped earlier in
  the same node stay *active* while the next drop is scored: ``project_edge`` (darts-pt
  ``sota/cnn/projection.py`` L83-100) zeroes only the candidate in weights that carry the decided
  nodes alone (``get_projected_weights``, ``model_search_darts_proj.py`` L65-81), and the node's
  drops are zeroed once it is decided (``project_edge``, L57-62 there). Zeroing each drop at once
  (greedy elimination) can keep other edges.

Schedule (projection interval ``K``, ``E`` edges per group, ``T`` topology nodes): project at
tuning epoch ``t`` when ``t % K == 0`` or ``t`` is the last; an op round while ``t < K E``, a
topology round after. Tuning lasts ``K (E - 1)`` epochs on NAS-Bench-201
(``nasbench201/projection.py`` L76-78) and ``K (E + T - 1) + 1`` on the DARTS space
(``sota/cnn/projection.py`` L126-127). Tuning trains the weights by a fresh SGD at a tenth of the
learning rate, held constant (``reset_optimizer(lr / 10, ...)``; the DARTS-space code makes a
cosine scheduler but never steps it), and keeps taking alpha steps (the projected rows, overwritten
by constants, get no gradient). The random edge and node order comes from a generator seeded by
the search's seed (the repository uses numpy's global generator).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import UsageError

#: accuracy (%) of the supernet with the given mixing weights, on the whole validation split
Scorer = Callable[[dict[str, torch.Tensor]], float]


@dataclass
class ProjectionState:
    """The decisions so far, per group: the kept op of each edge (-1: not yet projected), the edges
    the topology projection removed, and the nodes it has done."""

    chosen: dict[str, list[int]]
    removed: dict[str, list[bool]]
    nodes_done: dict[str, list[int]] = field(default_factory=dict)
    #: per group, the fixed rows and their values for the current decisions (see _constants)
    _made: dict[str, tuple[tuple, torch.Tensor, torch.Tensor]] = field(default_factory=dict, init=False, repr=False,
                                                                          compare=False)

    @classmethod
    def empty(cls, edges: Mapping[str, int]) -> ProjectionState:
        return cls({g: [-1] * n for g, n in edges.items()}, {g: [False] * n for g, n in edges.items()},
                   {g: [] for g in edges})

    def to_json(self) -> dict[str, Any]:
        return {"chosen": self.chosen, "removed": self.removed, "nodes_done": self.nodes_done}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ProjectionState:
        return cls({g: list(v) for g, v in data["chosen"].items()}, {g: list(v) for g, v in data["removed"].items()},
                   {g: list(v) for g, v in data["nodes_done"].items()})

    def apply(self, weights: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The projected mixing weights: chosen edges one-hot, removed edges zero, the others as given
        (constants replace the projected rows, so no gradient reaches their alphas)."""
        out = {}
        for group, w in weights.items():
            chosen, removed = self.chosen.get(group), self.removed.get(group)
            if chosen is None or (all(c < 0 for c in chosen) and not any(removed)):
                out[group] = w
                continue
            fixed, const = self._constants(group, w)
            out[group] = torch.where(fixed[:, None], const, w)
        return out

    def _constants(self, group: str, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Which rows of ``group`` the decisions fix, and their values, made on ``like``'s device
        once per decision: every pass of a tuning epoch applies them, and making them in each would
        upload from the host (a wait on CUDA) and write the one-hot entries edge by edge."""
        chosen, removed = self.chosen[group], self.removed[group]
        key = (tuple(chosen), tuple(removed), like.device, like.dtype, like.shape)
        made = self._made.get(group)
        if made is None or made[0] != key:
            fixed = torch.tensor([c >= 0 or r for c, r in zip(chosen, removed)])
            const = torch.zeros(like.shape, dtype=like.dtype)
            for e, (c, r) in enumerate(zip(chosen, removed)):
                if c >= 0 and not r:
                    const[e, c] = 1.0
            made = self._made[group] = (key, fixed.to(like.device), const.to(like.device))
        return made[1], made[2]

    def complete(self, topology: Mapping[str, Sequence[Sequence[int]]]) -> bool:
        ops_done = all(c >= 0 for chosen in self.chosen.values() for c in chosen)
        return ops_done and all(len(self.nodes_done[g]) == len(nodes) for g, nodes in topology.items())


def topology_nodes(space: Any, groups: Sequence[str]) -> dict[str, list[list[int]]]:
    """Per group, the incoming edges of the nodes the topology projection decides (more than 2)."""
    nodes = {}
    for group in groups:
        structure = space.topology(group)
        nodes[group] = [list(edges) for edges in structure or [] if len(edges) > 2]
    return nodes


def tune_epochs(interval: int, edges: int, topology: int) -> int:
    """The repository's tuning length: ``K (E - 1)`` without topology, ``K (E + T - 1) + 1`` with,
    or the shortest one whose schedule has every round where that is longer (``K = 1``)."""
    length = interval * (edges - 1) if topology == 0 else interval * (edges + topology - 1) + 1
    while not _fits(length, interval, edges, topology):
        length += 1
    return length


def schedule(tuning: int, interval: int, edges: int) -> list[tuple[int, str]]:
    """``(tuning epoch, "op" | "topology")`` of every projection round."""
    return [(t, "op" if t < interval * edges else "topology") for t in range(tuning)
            if t % interval == 0 or t == tuning - 1]


def _fits(tuning: int, interval: int, edges: int, topology: int) -> bool:
    kinds = [kind for _, kind in schedule(tuning, interval, edges)]
    return kinds.count("op") >= edges and kinds.count("topology") >= topology


def check_schedule(tuning: int, interval: int, edges: int, topology: int) -> None:
    if not _fits(tuning, interval, edges, topology):
        needed = tune_epochs(interval, edges, topology)
        raise UsageError(
            f"--tune-epochs {tuning} is too short for the projection schedule ({edges} op rounds"
            f"{f' and {topology} topology rounds' if topology else ''} every {interval} epochs need {needed}); "
            f"give at least {needed} or drop --tune-epochs"
        )


def _pick(generator: torch.Generator, candidates: Sequence[int]) -> int:
    return candidates[int(torch.randint(len(candidates), (1,), generator=generator))]


class Projection:
    """The DARTS-PT component: schedule and projection rounds (see the module docstring)."""

    def project_op(self, state: ProjectionState, group: str, weights: Mapping[str, torch.Tensor], score: Scorer,
                   generator: torch.Generator, op_names: Sequence[str]) -> dict[str, Any] | None:
        remaining = [e for e, c in enumerate(state.chosen[group]) if c < 0]
        if not remaining:
            return None
        edge = _pick(generator, remaining)
        scores: dict[str, float] = {}
        best, best_acc = 0, None
        for op in range(len(op_names)):
            masked = dict(state.apply(weights))
            row = masked[group][edge].clone()
            row[op] = 0.0  # removed, not renormalised
            masked[group] = torch.cat([masked[group][:edge], row[None], masked[group][edge + 1:]])
            acc = score(masked)
            scores[op_names[op]] = acc
            if best_acc is None or acc < best_acc:
                best, best_acc = op, acc
        state.chosen[group][edge] = best
        return {"kind": "op", "cell": group, "edge": edge, "scores": scores, "chosen": op_names[best]}

    def project_node(self, state: ProjectionState, group: str, nodes: Sequence[Sequence[int]],
                     weights: Mapping[str, torch.Tensor], score: Scorer, generator: torch.Generator,
                     edge_names: Sequence[str]) -> list[dict[str, Any]]:
        remaining = [n for n in range(len(nodes)) if n not in state.nodes_done[group]]
        if not remaining:
            return []
        node = _pick(generator, remaining)
        edges = list(nodes[node])
        decided = state.apply(weights)  # the earlier nodes' drops only: this node's stay active until it is decided
        records = []
        while len(edges) > 2:
            scores: dict[str, float] = {}
            drop, drop_acc = None, None
            for edge in edges:
                masked = dict(decided)
                masked[group] = torch.cat([decided[group][:edge], torch.zeros_like(decided[group][edge:edge + 1]),
                                           decided[group][edge + 1:]])
                acc = score(masked)
                scores[edge_names[edge]] = acc
                if drop_acc is None or not acc < drop_acc:
                    drop, drop_acc = edge, acc
            edges.remove(drop)
            records.append({"kind": "topology", "cell": group, "node": node, "edge": drop, "scores": scores,
                            "chosen": edge_names[drop]})
        for record in records:
            state.removed[group][record["edge"]] = True
        state.nodes_done[group].append(node)
        return records

    def round(self, kind: str, state: ProjectionState, weights: Mapping[str, torch.Tensor], score: Scorer,
              generator: torch.Generator, network: Any, nodes: Mapping[str, Sequence[Sequence[int]]]
              ) -> list[dict[str, Any]]:
        """One projection round, group after group (normal before reduce, as the repository)."""
        records: list[dict[str, Any]] = []
        for group in weights:
            if kind == "op":
                record = self.project_op(state, group, weights, score, generator, network.op_names[group])
                records += [record] if record else []
            else:
                records += self.project_node(state, group, nodes[group], weights, score, generator,
                                             network.edge_names[group])
        for record in records:
            record["edge_name"] = network.edge_names[record["cell"]][record["edge"]]
        return records
