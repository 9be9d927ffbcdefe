"""Tiny search models with the interfaces of the three original repositories (for the adapter tests).

Written here from the interfaces the originals expose, at toy sizes:

* :class:`DartsNetwork` (DARTS ``cnn/model_search.py``): alphas ``alphas_normal``/``alphas_reduce``
  are plain tensors with ``requires_grad`` (not registered), ``arch_parameters()`` returns the list
  ``_arch_parameters``, ``_loss(input, target)``, ``new()``.
* :class:`PCDartsNetwork` (PC-DARTS): partial-channel mixed ops and edge normalisation; four plain
  arch tensors ``alphas_normal, alphas_reduce, betas_normal, betas_reduce``.
* :class:`NB201Network` (beta-DARTS ``nasbench201/model.py``): one *registered* ``nn.Parameter``
  ``_arch_parameters`` of shape ``[6, 5]``; ``arch_parameters()`` returns ``[it]``;
  ``forward(x, updateType='alpha')`` (``'weight'`` uses the raw parameter, which the training loop
  has replaced by its softmax); ``_loss(x, y, updateType='alpha')``; ``get_weights()``;
  ``softmax_arch_parameters()`` / ``restore_arch_parameters()``.
* :class:`BetaDartsSpaceNetwork` (beta-DARTS ``sota/cnn/model_search.py``): DARTS-space alphas as a
  list of plain tensors with the ``updateType`` interface.
* :class:`DartsPTProjNetwork` (DARTS-PT ``nasbench201/search_model.py`` and
  ``search_model_darts_proj.py``): one plain ``[6, 5]`` alpha tensor, ``_loss(x, y,
  return_logits=False)``, the weight optimizer built inside the model and ``step(x, y, args,
  shared=None)``; projected edges are overwritten in the forward's mixing weights through ``.data``.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

PRIMITIVES = ["none", "max_pool_3x3", "skip_connect", "conv_1x1"]
NB201_OPS = ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]


class Zero(nn.Module):
    def __init__(self, stride):
        super().__init__()
        self.stride = stride

    def forward(self, x):
        return x[:, :, :: self.stride, :: self.stride] * 0.0


class ReLUConvBN(nn.Module):
    def __init__(self, c_in, c_out, kernel, stride, affine=False):
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )

    def forward(self, x):
        return self.op(x)


class Downsample(nn.Module):
    """Halves the resolution keeping the channels (stands in for DARTS' FactorizedReduce)."""

    def __init__(self, c_in, c_out):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=False)

    def forward(self, x):
        return self.bn(self.conv(F.relu(x)))


def darts_op(name, c, stride):
    if name == "none":
        return Zero(stride)
    if name == "max_pool_3x3":
        return nn.Sequential(nn.MaxPool2d(3, stride=stride, padding=1), nn.BatchNorm2d(c, affine=False))
    if name == "skip_connect":
        return nn.Identity() if stride == 1 else Downsample(c, c)
    if name == "conv_1x1":
        return ReLUConvBN(c, c, 1, stride)
    raise KeyError(name)


class MixedOp(nn.Module):
    def __init__(self, c, stride):
        super().__init__()
        self._ops = nn.ModuleList(darts_op(p, c, stride) for p in PRIMITIVES)

    def forward(self, x, weights):
        return sum(w * op(x) for w, op in zip(weights, self._ops))


class PartialMixedOp(nn.Module):
    """PC-DARTS: only 1/k of the channels go through the ops; channels are shuffled after."""

    def __init__(self, c, stride, k=2):
        super().__init__()
        self.k = k
        self.stride = stride
        self.pool = nn.MaxPool2d(2, 2)
        self._ops = nn.ModuleList(darts_op(p, c // k, stride) for p in PRIMITIVES)

    def forward(self, x, weights):
        part = x.shape[1] // self.k
        active, bypass = x[:, :part], x[:, part:]
        mixed = sum(w * op(active) for w, op in zip(weights, self._ops))
        if self.stride == 2:
            bypass = self.pool(bypass)
        out = torch.cat([mixed, bypass], dim=1)
        n, c, h, w = out.shape
        return out.view(n, self.k, c // self.k, h, w).transpose(1, 2).reshape(n, c, h, w)


class Cell(nn.Module):
    def __init__(self, steps, multiplier, c_pp, c_p, c, reduction, reduction_prev, partial=False):
        super().__init__()
        self.reduction = reduction
        self.preprocess0 = Downsample(c_pp, c) if reduction_prev else ReLUConvBN(c_pp, c, 1, 1)
        self.preprocess1 = ReLUConvBN(c_p, c, 1, 1)
        self._steps = steps
        self._multiplier = multiplier
        self._ops = nn.ModuleList()
        for i in range(steps):
            for j in range(2 + i):
                stride = 2 if reduction and j < 2 else 1
                self._ops.append(PartialMixedOp(c, stride) if partial else MixedOp(c, stride))

    def forward(self, s0, s1, weights, weights2=None):
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        offset = 0
        for _ in range(self._steps):
            s = sum(
                (1.0 if weights2 is None else weights2[offset + j]) * self._ops[offset + j](h, weights[offset + j])
                for j, h in enumerate(states)
            )
            offset += len(states)
            states.append(s)
        return torch.cat(states[-self._multiplier :], dim=1)


class DartsNetwork(nn.Module):
    """DARTS' search network, at toy size. Alphas are plain tensors, as in the original."""

    partial = False

    def __init__(self, C, num_classes, layers, criterion, steps=2, multiplier=2, stem_multiplier=2):
        super().__init__()
        self._C, self._num_classes, self._layers, self._criterion = C, num_classes, layers, criterion
        self._steps, self._multiplier = steps, multiplier
        c_curr = stem_multiplier * C
        self.stem = nn.Sequential(nn.Conv2d(3, c_curr, 3, padding=1, bias=False), nn.BatchNorm2d(c_curr))
        c_pp, c_p, c_curr = c_curr, c_curr, C
        self.cells = nn.ModuleList()
        reduction_prev = False
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                c_curr *= 2
            cell = Cell(steps, multiplier, c_pp, c_p, c_curr, reduction, reduction_prev, partial=self.partial)
            reduction_prev = reduction
            self.cells.append(cell)
            c_pp, c_p = c_p, multiplier * c_curr
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_p, num_classes)
        self._initialize_alphas()

    def new(self):
        model_new = type(self)(self._C, self._num_classes, self._layers, self._criterion)
        for x, y in zip(model_new.arch_parameters(), self.arch_parameters()):
            x.data.copy_(y.data)
        return model_new

    def _cell_weights(self, cell):
        alphas = self.alphas_reduce if cell.reduction else self.alphas_normal
        return F.softmax(alphas, dim=-1), None

    def forward(self, input):
        s0 = s1 = self.stem(input)
        for cell in self.cells:
            weights, weights2 = self._cell_weights(cell)
            s0, s1 = s1, cell(s0, s1, weights, weights2)
        out = self.global_pooling(s1)
        return self.classifier(out.view(out.size(0), -1))

    def _loss(self, input, target):
        logits = self(input)
        return self._criterion(logits, target)

    def _num_edges(self):
        return sum(2 + i for i in range(self._steps))

    def _initialize_alphas(self):
        k, num_ops = self._num_edges(), len(PRIMITIVES)
        # plain tensors, not registered: exactly what the original's Variable(..., requires_grad=True) makes
        self.alphas_normal = (1e-3 * torch.randn(k, num_ops)).requires_grad_(True)
        self.alphas_reduce = (1e-3 * torch.randn(k, num_ops)).requires_grad_(True)
        self._arch_parameters = [self.alphas_normal, self.alphas_reduce]

    def arch_parameters(self):
        return self._arch_parameters


class PCDartsNetwork(DartsNetwork):
    """PC-DARTS' search network: partial channels and edge normalisation ``betas``."""

    partial = True

    def _edge_weights(self, betas):
        # per node, a softmax over its incoming edges (node i has 2 + i of them)
        parts, start = [], 0
        for i in range(self._steps):
            end = start + 2 + i
            parts.append(F.softmax(betas[start:end], dim=-1))
            start = end
        return torch.cat(parts)

    def _cell_weights(self, cell):
        if cell.reduction:
            return F.softmax(self.alphas_reduce, dim=-1), self._edge_weights(self.betas_reduce)
        return F.softmax(self.alphas_normal, dim=-1), self._edge_weights(self.betas_normal)

    def _initialize_alphas(self):
        super()._initialize_alphas()
        k = self._num_edges()
        self.betas_normal = (1e-3 * torch.randn(k)).requires_grad_(True)
        self.betas_reduce = (1e-3 * torch.randn(k)).requires_grad_(True)
        self._arch_parameters = [self.alphas_normal, self.alphas_reduce, self.betas_normal, self.betas_reduce]


class BetaDartsSpaceNetwork(DartsNetwork):
    """beta-DARTS' DARTS-space model: plain-tensor alphas in a list, and ``updateType``."""

    def forward(self, input, updateType="alpha"):
        s0 = s1 = self.stem(input)
        for cell in self.cells:
            alphas = self.alphas_reduce if cell.reduction else self.alphas_normal
            weights = alphas if updateType == "weight" else F.softmax(alphas, dim=-1)
            s0, s1 = s1, cell(s0, s1, weights)
        out = self.global_pooling(s1)
        return self.classifier(out.view(out.size(0), -1))

    def _loss(self, input, target, updateType="alpha"):
        return self._criterion(self(input, updateType=updateType), target)


# -- NAS-Bench-201 (beta-DARTS' nasbench201/model.py interface) ---------------------------------


def nb201_op(name, c):
    if name == "none":
        return Zero(1)
    if name == "skip_connect":
        return nn.Identity()
    if name == "nor_conv_1x1":
        return ReLUConvBN(c, c, 1, 1)
    if name == "nor_conv_3x3":
        return ReLUConvBN(c, c, 3, 1)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    raise KeyError(name)


class SearchCell(nn.Module):
    """4 nodes, 6 edges ``1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2``."""

    def __init__(self, c, max_nodes=4):
        super().__init__()
        self.max_nodes = max_nodes
        self.edge_keys = [f"{i}<-{j}" for i in range(1, max_nodes) for j in range(i)]
        self.edges = nn.ModuleDict({k: nn.ModuleList(nb201_op(o, c) for o in NB201_OPS) for k in self.edge_keys})
        self.edge2index = {k: n for n, k in enumerate(self.edge_keys)}
        self.num_edges = len(self.edge_keys)

    def forward(self, inputs, weightss):
        nodes = [inputs]
        for i in range(1, self.max_nodes):
            total = 0
            for j in range(i):
                key = f"{i}<-{j}"
                weights = weightss[self.edge2index[key]]
                total = total + sum(w * op(nodes[j]) for w, op in zip(weights, self.edges[key]))
            nodes.append(total)
        return nodes[-1]


class NB201Network(nn.Module):
    """beta-DARTS' NAS-Bench-201 search model at toy size: one registered ``[6, 5]`` arch parameter."""

    def __init__(self, C, N, max_nodes, num_classes, criterion):
        super().__init__()
        self._C, self._layerN, self._criterion = C, N, criterion
        self.stem = nn.Sequential(nn.Conv2d(3, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
        self.cells = nn.ModuleList(SearchCell(C, max_nodes) for _ in range(N))
        self.lastact = nn.Sequential(nn.BatchNorm2d(C), nn.ReLU(inplace=False))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C, num_classes)
        num_edge = self.cells[0].num_edges
        self._arch_parameters = nn.Parameter(1e-3 * torch.randn(num_edge, len(NB201_OPS)))

    def get_weights(self):
        return (
            list(self.stem.parameters())
            + list(self.cells.parameters())
            + list(self.lastact.parameters())
            + list(self.classifier.parameters())
        )

    def arch_parameters(self):
        return [self._arch_parameters]

    def _loss(self, input, target, updateType="alpha"):
        return self._criterion(self(input, updateType=updateType), target)

    def softmax_arch_parameters(self):
        self._saved_arch_parameters = self._arch_parameters.clone()
        self._arch_parameters.data.copy_(F.softmax(self._arch_parameters, dim=-1))

    def restore_arch_parameters(self):
        self._arch_parameters.data.copy_(self._saved_arch_parameters)
        del self._saved_arch_parameters

    def forward(self, inputs, updateType="alpha"):
        alphas = self._arch_parameters if updateType == "weight" else F.softmax(self._arch_parameters, dim=-1)
        feature = self.stem(inputs)
        for cell in self.cells:
            feature = cell(feature, alphas)
        out = self.global_pooling(self.lastact(feature))
        return self.classifier(out.view(out.size(0), -1))


class DartsPTProjNetwork(NB201Network):
    """DARTS-PT's NAS-Bench-201 projection model at toy size (see the module docstring)."""

    def __init__(self, C, N, max_nodes, num_classes, criterion, args):
        super().__init__(C, N, max_nodes, num_classes, criterion)
        num_edge = self.cells[0].num_edges
        del self._arch_parameters
        self._arch_parameters = (1e-3 * torch.randn(num_edge, len(NB201_OPS))).requires_grad_(True)
        self.reset_optimizer(args.learning_rate, args.momentum, args.weight_decay)
        self.candidate_flags = torch.ones(num_edge, dtype=torch.bool)
        self.proj_weights = torch.zeros_like(self._arch_parameters)

    def reset_optimizer(self, lr, momentum, weight_decay):
        self.optimizer = torch.optim.SGD(self.get_weights(), lr, momentum=momentum, weight_decay=weight_decay)

    def project_op(self, eid, opid):
        self.proj_weights[eid][opid] = 1
        self.candidate_flags[eid] = False

    def get_projected_weights(self):
        weights = F.softmax(self._arch_parameters, dim=-1)
        for eid in range(len(weights)):
            if not self.candidate_flags[eid]:
                weights[eid].data.copy_(self.proj_weights[eid])
        return weights

    def forward(self, inputs, weights=None):
        weights = self.get_projected_weights() if weights is None else weights
        feature = self.stem(inputs)
        for cell in self.cells:
            feature = cell(feature, weights)
        out = self.global_pooling(self.lastact(feature))
        return self.classifier(out.view(out.size(0), -1))

    def _loss(self, input, target, return_logits=False):
        logits = self(input)
        loss = self._criterion(logits, target)
        return (loss, logits) if return_logits else loss

    def step(self, input, target, args, shared=None):
        loss, logits = self._loss(input, target, return_logits=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.get_weights(), args.grad_clip)
        self.optimizer.step()
        return logits, loss
