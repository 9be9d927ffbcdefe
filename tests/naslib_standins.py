"""Stand-ins with the shapes of NASLib's classes (automl/NASLib @ 0b51bc18), for the adapter tests.

NASLib is not on the package index, and its code must not be copied; these are written from its
interfaces, at toy size, for the default run (tests/test_adapters_naslib_real.py runs the adapter
against NASLib's own code where ``$FLATARCH_NASLIB`` names a checkout):

* :class:`EdgeData`: private and shared entries (``set(key, value, shared)``, attribute access,
  ``has``); a copy of a cell deep-copies the private entries and keeps the *same* shared dict
  (``graph.py`` L901-1076), so an ``alpha`` set with ``shared=True`` is one Parameter for every
  copy of the cell.
* :class:`Cell` / :class:`SearchSpace`: a graph whose edges carry ``EdgeData`` with an ``op``;
  ``update_edges(update_func, scope, private_edge_data)`` calls ``update_func(edge=...)`` on one
  instance per cell (``private_edge_data=False``) or on every copy (``True``)
  (L683-723); ``get_all_edge_data(key)`` walks single instances (L561-588); ``parse()``
  registers the edge ops as submodules (L424-454) but never the alphas; ``forward`` calls
  ``edge_data.op.forward(x, edge_data=edge_data)`` (L410); ``clone()`` deep-copies (L794-801);
  ``get_type()`` names the space.
* :class:`DARTSMixedOp`: weights = ``edge_data.alpha``, softmax, sum of ``w_i * op_i(x, None)``
  (``darts/optimizer.py`` L286-301, ``primitives.py`` L114-125).
* :class:`DARTSOptimizer`: the constructor arguments, ``adapt_search_space``,
  ``before_training``, ``new_epoch`` and ``step`` of ``darts/optimizer.py`` L43-191, with the
  optimizers ``create_optimizer`` builds (``utils/pytorch_helper.py``: Adam with betas
  (0.5, 0.999); SGD with Nesterov momentum).
"""

from __future__ import annotations

import copy
import logging
from types import SimpleNamespace

import torch
import torch.nn as nn

logger = logging.getLogger(__name__)


class EdgeData:
    def __init__(self, op):
        object.__setattr__(self, "_private", {"op": op})
        object.__setattr__(self, "_shared", {})

    def __getattr__(self, key):
        if key.startswith("_"):
            raise AttributeError(key)
        if key in self._private:
            return self._private[key]
        if key in self._shared:
            return self._shared[key]
        raise AttributeError(f"Cannot find field '{key}' in the given EdgeData!")

    def __setattr__(self, name, value):
        raise ValueError("not allowed. use set().")

    def has(self, key):
        return key in self._private or key in self._shared

    def set(self, key, value, shared=False):
        (self._shared if shared else self._private)[key] = value

    def copy(self):
        new = EdgeData.__new__(EdgeData)
        object.__setattr__(new, "_private", copy.deepcopy(self._private))
        object.__setattr__(new, "_shared", self._shared)
        return new


class Primitive(nn.Module):
    """NASLib primitives take ``(x, edge_data)``."""

    def __init__(self, module):
        super().__init__()
        self.op = module

    def forward(self, x, edge_data=None):
        return self.op(x)


def primitives(c):
    return [
        Primitive(nn.Identity()),
        Primitive(nn.Sequential(nn.ReLU(), nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c, affine=False))),
        Primitive(nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)),
    ]


class DARTSMixedOp(nn.Module):
    def __init__(self, ops):
        super().__init__()
        self.primitives = ops
        for i, op in enumerate(ops):
            self.add_module(f"primitive-{i}", op)

    def get_weights(self, edge_data):
        return edge_data.alpha

    def process_weights(self, weights):
        return torch.softmax(weights, dim=-1)

    def apply_weights(self, x, weights):
        return sum(w * op(x, None) for w, op in zip(weights, self.primitives))

    def forward(self, x, edge_data):
        return self.apply_weights(x, self.process_weights(self.get_weights(edge_data)))


class Cell(nn.Module):
    """A 3-node cell graph: edges (1,2), (1,3), (2,3); node 1 is the input, node 3 the output."""

    EDGES = ((1, 2), (1, 3), (2, 3))

    def __init__(self, name, c, scope):
        super().__init__()
        self.name = name
        self.scope = scope
        self.edge_data = {edge: EdgeData(primitives(c)) for edge in self.EDGES}

    def copy(self):
        new = copy.deepcopy(self)
        new.edge_data = {edge: data.copy() for edge, data in self.edge_data.items()}
        return new

    def parse(self):
        for (u, v), data in self.edge_data.items():
            self.add_module(f"{self.name}-edge({u},{v})", data.op)

    def forward(self, x):
        states = {1: x}
        for node in (2, 3):
            states[node] = sum(
                self.edge_data[(u, v)].op.forward(states[u], edge_data=self.edge_data[(u, v)])
                for (u, v) in self.EDGES
                if v == node
            )
        return states[3]


class SearchSpace(nn.Module):
    """Stem, ``cells`` copies of one cell (they share their alphas), classifier."""

    OPTIMIZER_SCOPE = ["stage_1"]

    def __init__(self, c=4, cells=2, num_classes=3, space_type="nasbench201"):
        super().__init__()
        self.space_type = space_type
        self.stem = nn.Sequential(nn.Conv2d(3, c, 3, padding=1, bias=False), nn.BatchNorm2d(c))
        first = Cell("cell", c, "stage_1")
        self.cells = [first] + [first.copy() for _ in range(cells - 1)]
        self.classifier = nn.Linear(c, num_classes)

    def get_type(self):
        return self.space_type

    def clone(self):
        return copy.deepcopy(self)

    def _instances(self, single):
        if not single:
            return list(self.cells)
        seen, out = set(), []
        for cell in self.cells:
            if cell.name not in seen:
                seen.add(cell.name)
                out.append(cell)
        return out

    def update_edges(self, update_func, scope="all", private_edge_data=False):
        for cell in self._instances(single=not private_edge_data):
            if scope == "all" or cell.scope in scope:
                for (u, v), data in cell.edge_data.items():
                    update_func(edge=SimpleNamespace(head=u, tail=v, data=data))

    def get_all_edge_data(self, key, scope="all", private_edge_data=False):
        return [
            getattr(data, key)
            for cell in self._instances(single=not private_edge_data)
            for data in cell.edge_data.values()
            if data.has(key)
        ]

    def parse(self):
        for i, cell in enumerate(self.cells):
            cell.parse()
            self.add_module(f"cell-{i}", cell)

    def forward(self, x):
        x = self.stem(x)
        for cell in self.cells:
            x = cell(x)
        return self.classifier(x.mean(dim=(2, 3)))


class DARTSOptimizer:
    """NASLib's ``DARTSOptimizer`` interface and step (see the module docstring)."""

    using_step_function = True

    @staticmethod
    def add_alphas(edge):
        alpha = torch.nn.Parameter(1e-3 * torch.randn(size=[len(edge.data.op)], requires_grad=True))
        edge.data.set("alpha", alpha, shared=True)

    @staticmethod
    def update_ops(edge):
        edge.data.set("op", DARTSMixedOp(edge.data.op))

    def __init__(
        self,
        learning_rate=0.025,
        momentum=0.9,
        weight_decay=0.0003,
        grad_clip=5,
        unrolled=False,
        arch_learning_rate=0.0003,
        arch_weight_decay=0.001,
        op_optimizer="SGD",
        arch_optimizer="Adam",
        loss_criteria="CrossEntropyLoss",
        **kwargs,
    ):
        self.learning_rate = learning_rate
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.grad_clip = grad_clip
        self.unrolled = unrolled
        self.arch_learning_rate = arch_learning_rate
        self.arch_weight_decay = arch_weight_decay
        self.op_optimizer = op_optimizer
        self.arch_optimizer = arch_optimizer
        self.loss = loss_criteria
        self.architectural_weights = torch.nn.ParameterList()
        # NASLib picks cuda:0 when there is one; the stand-in stays on the CPU, as the test batches do.
        self.device = torch.device("cpu")

    def adapt_search_space(self, search_space, dataset, scope=None, **kwargs):
        self.search_space = search_space
        graph = search_space.clone()
        if not scope:
            scope = graph.OPTIMIZER_SCOPE
        graph.update_edges(self.__class__.add_alphas, scope=scope, private_edge_data=False)
        graph.update_edges(self.__class__.update_ops, scope=scope, private_edge_data=True)
        for alpha in graph.get_all_edge_data("alpha"):
            self.architectural_weights.append(alpha)
        graph.parse()
        assert self.arch_optimizer == "Adam" and self.op_optimizer == "SGD"
        self.arch_optimizer = torch.optim.Adam(
            self.architectural_weights.parameters(),
            lr=self.arch_learning_rate,
            weight_decay=self.arch_weight_decay,
            betas=(0.5, 0.999),
        )
        self.op_optimizer = torch.optim.SGD(
            graph.parameters(), lr=self.learning_rate, momentum=self.momentum, weight_decay=self.weight_decay,
            nesterov=True,
        )
        self.loss = torch.nn.CrossEntropyLoss()
        graph.train()
        self.graph = graph
        self.scope = scope
        self.dataset = dataset

    def get_checkpointables(self):
        return {"model": self.graph, "op_optimizer": self.op_optimizer, "arch_optimizer": self.arch_optimizer,
                "arch_weights": self.architectural_weights}

    def before_training(self):
        self.graph = self.graph.to(self.device)
        self.architectural_weights = self.architectural_weights.to(self.device)

    def new_epoch(self, epoch):
        self.logged_argmax = [int(a.argmax()) for a in self.architectural_weights]
        logger.info("Arch weights argmax: %s", self.logged_argmax)

    def step(self, data_train, data_val):
        (x_train, y_train), (x_val, y_val) = data_train, data_val
        # the arch step first: one validation pass, backward, a closure-less step
        self.arch_optimizer.zero_grad()
        val_logits = self.graph(x_val)
        val_loss = self.loss(val_logits, y_val)
        val_loss.backward()
        self.arch_optimizer.step()
        # then the weights, clipped to grad_clip
        self.op_optimizer.zero_grad()
        train_logits = self.graph(x_train)
        train_loss = self.loss(train_logits, y_train)
        train_loss.backward()
        if self.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.graph.parameters(), self.grad_clip)
        self.op_optimizer.step()
        return train_logits, val_logits, train_loss, val_loss
