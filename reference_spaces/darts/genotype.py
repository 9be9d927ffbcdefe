"""The DARTS genotype, in the original repositories' format, and its derivation from alphas.

``Genotype(normal=[(op, input), ...], normal_concat=[2, 3, 4, 5], reduce=[...], reduce_concat=[...])``:
two ``(op, input)`` pairs per intermediate node, in node order; inputs 0 and 1 are the two
previous cells, input ``k >= 2`` is intermediate node ``k - 2``.

Derivation (DARTS, Liu et al. 2019, section 2.4: ``Network.genotype`` in ``cnn/model_search.py``
of quark0/darts; PC-DARTS edge normalisation, Xu et al. 2020: ``genotype`` in ``model_search.py``
of yuhuixu1993/PC-DARTS). Edge ``e`` of a cell enters node ``i`` from predecessor ``j``; rows of
alpha are ordered node by node, predecessors ascending (node 0 owns rows 0-1, node 1 rows 2-4, ...).
With ``w_e = softmax(alpha_e)`` (and, for PC-DARTS, ``w_e <- w_e * softmax_{e in in(i)}(beta)_e``)::

    score(e) = max_{o != none} w_e[o],       op(e) = argmax_{o != none} w_e[o]

and node ``i`` keeps its two highest-scoring incoming edges. Each incoming edge comes from a
different predecessor, so the two kept inputs are always distinct. Ties go to the lower
predecessor index and to the lower op index (deterministic, input order independent).
"""

from __future__ import annotations

import ast
import json
import os
from collections.abc import Sequence
from typing import Any

import torch

from flatarch.atomic_files import atomic_write

from .known import KNOWN_GENOTYPES, Genotype, known_genotype

#: The 7 ops of ``s5``, every DARTS op but ``none``, in alpha column order: the ops a genotype may
#: hold, whichever op set was searched.
GENOTYPE_OPS: tuple[str, ...] = (
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)

#: Candidate-op sets by name: ``s5``, the 7 ops without ``none`` (AsquaredM, beta-DARTS, SmoothDARTS
#: and DARTS-PT search it: ``sota/cnn/spaces.py`` ``primitives_5``), and ``darts``, the 8 ops of the
#: original DARTS (``none`` first).
OP_SETS: dict[str, tuple[str, ...]] = {"s5": GENOTYPE_OPS, "darts": ("none", *GENOTYPE_OPS)}

#: The DARTS space's op set when none is given: the space the A2M authors searched (AsquaredM
#: ``sota/cnn/train_search.py`` ``--search_space`` default ``s5``, L71).
DEFAULT_OPS = "s5"

#: The 8 candidate ops of the original DARTS, in alpha column order.
PRIMITIVES: tuple[str, ...] = OP_SETS["darts"]


def op_set_of(columns: int) -> tuple[str, ...]:
    """The op set whose alpha matrices have ``columns`` columns (7: ``s5``, 8: ``darts``)."""
    for ops in OP_SETS.values():
        if len(ops) == columns:
            return ops
    sizes = " or ".join(f"{len(ops)} ({name})" for name, ops in OP_SETS.items())
    raise ValueError(f"a DARTS alpha matrix has {sizes} columns, one per op; got {columns}")

#: Intermediate nodes per cell and the number of edges they give (2 + 3 + 4 + 5).
STEPS = 4


def num_edges(steps: int = STEPS) -> int:
    """Edges of a cell with ``steps`` intermediate nodes: ``sum_{i<steps} (i + 2)``."""
    return sum(i + 2 for i in range(steps))


def edge_index(node: int, pred: int) -> int:
    """Row of the alpha matrix for the edge ``pred -> node`` (node counted from 0 among the
    intermediate nodes, ``pred`` in ``0 .. node + 1``)."""
    if not 0 <= pred < node + 2:
        raise ValueError(f"node {node} has predecessors 0..{node + 1}, got {pred}")
    return sum(i + 2 for i in range(node)) + pred


def edge_normalized_betas(betas: torch.Tensor, steps: int = STEPS) -> torch.Tensor:
    """PC-DARTS edge normalisation: softmax of ``betas`` over the incoming edges of each node."""
    betas = torch.as_tensor(betas)
    if betas.shape != (num_edges(steps),):
        raise ValueError(f"betas must have shape ({num_edges(steps)},), got {tuple(betas.shape)}")
    parts, start = [], 0
    for i in range(steps):
        parts.append(torch.softmax(betas[start : start + i + 2], dim=-1))
        start += i + 2
    return torch.cat(parts)


def derive_cell(alphas: torch.Tensor, betas: torch.Tensor | None = None,
                steps: int = STEPS) -> list[tuple[str, int]]:
    """The ``[(op, input), ...]`` list of one cell from its alpha matrix (``edges x 7`` over ``s5``
    or ``edges x 8`` over ``darts``) and, for PC-DARTS, its betas (``edges``); see the module
    docstring for the rule."""
    alphas = torch.as_tensor(alphas).detach().float().cpu()
    if alphas.dim() != 2 or alphas.shape[0] != num_edges(steps):
        raise ValueError(f"alphas must have shape ({num_edges(steps)}, ops), got {tuple(alphas.shape)}")
    return cell_from_weights(torch.softmax(alphas, dim=-1), betas, steps, op_set_of(alphas.shape[1]))


def cell_from_weights(weights: torch.Tensor, betas: torch.Tensor | None = None, steps: int = STEPS,
                      primitives: Sequence[str] = OP_SETS[DEFAULT_OPS]) -> list[tuple[str, int]]:
    """The cell of mixing weights (``edges x len(primitives)``, rows on the simplex, e.g. softmax of
    the alphas, or DARTS-PT's projected rows); ``none`` is never chosen."""
    weights = torch.as_tensor(weights).detach().float().cpu()
    if weights.shape != (num_edges(steps), len(primitives)):
        raise ValueError(
            f"weights must have shape ({num_edges(steps)}, {len(primitives)}), got {tuple(weights.shape)}"
        )
    if betas is not None:
        weights = weights * edge_normalized_betas(torch.as_tensor(betas).detach().float().cpu(), steps)[:, None]
    choices = [o for o, name in enumerate(primitives) if name != "none"]
    gene: list[tuple[str, int]] = []
    for node in range(steps):
        candidates = []
        for pred in range(node + 2):
            row = weights[edge_index(node, pred)].tolist()
            best_op = max(choices, key=lambda o: (row[o], -o))
            candidates.append((row[best_op], pred, best_op))
        # highest score first; equal scores: lower predecessor first
        candidates.sort(key=lambda c: (-c[0], c[1]))
        for _, pred, op in sorted(candidates[:2], key=lambda c: c[1]):
            gene.append((primitives[op], pred))
    return gene


def derive_genotype(alphas_normal: torch.Tensor, alphas_reduce: torch.Tensor,
                    betas_normal: torch.Tensor | None = None, betas_reduce: torch.Tensor | None = None,
                    steps: int = STEPS) -> Genotype:
    """The genotype of a search network's alphas (and PC-DARTS betas); concat = all intermediate nodes."""
    concat = list(range(2, 2 + steps))
    return Genotype(
        normal=derive_cell(alphas_normal, betas_normal, steps), normal_concat=concat,
        reduce=derive_cell(alphas_reduce, betas_reduce, steps), reduce_concat=list(concat),
    )


def genotype_from_weights(normal: torch.Tensor, reduce: torch.Tensor, betas_normal: torch.Tensor | None = None,
                          betas_reduce: torch.Tensor | None = None, steps: int = STEPS,
                          primitives: Sequence[str] = OP_SETS[DEFAULT_OPS]) -> Genotype:
    """:func:`derive_genotype` from mixing weights over ``primitives`` instead of alphas."""
    concat = list(range(2, 2 + steps))
    return Genotype(
        normal=cell_from_weights(normal, betas_normal, steps, primitives), normal_concat=concat,
        reduce=cell_from_weights(reduce, betas_reduce, steps, primitives), reduce_concat=list(concat),
    )


# ----------------------------------------------------------------------------------------------
# validation and serialisation


def validate(genotype: Genotype) -> Genotype:
    """Check and normalise a genotype (tuples of ``(str, int)``, concat as a list); raises
    ``ValueError`` naming the problem."""
    out = {}
    for cell in ("normal", "reduce"):
        pairs = getattr(genotype, cell)
        concat = list(getattr(genotype, f"{cell}_concat"))
        if len(pairs) % 2 or not pairs:
            raise ValueError(f"{cell}: need two (op, input) pairs per node, got {len(pairs)} pairs")
        steps = len(pairs) // 2
        norm = []
        for k, pair in enumerate(pairs):
            if len(pair) != 2:
                raise ValueError(f"{cell}[{k}]: expected (op, input), got {pair!r}")
            op, inp = pair
            if op not in GENOTYPE_OPS:
                raise ValueError(f"{cell}[{k}]: unknown op {op!r}; allowed: {', '.join(GENOTYPE_OPS)}")
            if isinstance(inp, bool) or not isinstance(inp, int) or not 0 <= inp < k // 2 + 2:
                raise ValueError(f"{cell}[{k}]: input {inp!r} must be an int in 0..{k // 2 + 1} for node {k // 2}")
            norm.append((op, inp))
        if not concat or any(not isinstance(c, int) or not 0 <= c < steps + 2 for c in concat):
            raise ValueError(f"{cell}_concat: {concat!r} must list node indices in 0..{steps + 1}")
        out[cell], out[f"{cell}_concat"] = norm, concat
    if len(out["normal"]) != len(out["reduce"]):
        raise ValueError("normal and reduce cells must have the same number of nodes")
    return Genotype(**out)


def to_json(genotype: Genotype) -> dict[str, Any]:
    """A JSON-ready dict ``{"normal": [[op, input], ...], "normal_concat": [...], ...}``."""
    g = validate(genotype)
    return {
        "normal": [[op, i] for op, i in g.normal], "normal_concat": list(g.normal_concat),
        "reduce": [[op, i] for op, i in g.reduce], "reduce_concat": list(g.reduce_concat),
    }


def from_json(data: dict[str, Any]) -> Genotype:
    """Inverse of :func:`to_json` (accepts lists or tuples for the pairs)."""
    if not isinstance(data, dict):
        raise ValueError(f"genotype JSON must be an object with keys {', '.join(Genotype._fields)}")
    missing = [k for k in Genotype._fields if k not in data]
    if missing:
        raise ValueError(f"genotype JSON lacks {', '.join(missing)}; expected keys {', '.join(Genotype._fields)}")
    try:
        genotype = Genotype(
            normal=[tuple(p) for p in data["normal"]], normal_concat=list(data["normal_concat"]),
            reduce=[tuple(p) for p in data["reduce"]], reduce_concat=list(data["reduce_concat"]),
        )
    except TypeError:
        raise ValueError(
            "genotype JSON: normal/reduce must be lists of [op, input] pairs and the concats lists of node indices"
        ) from None
    return validate(genotype)


def _concat_literal(concat: Sequence[int]) -> str:
    c = list(concat)
    if c and c == list(range(c[0], c[-1] + 1)):
        return f"range({c[0]}, {c[-1] + 1})"
    return repr(c)


def to_literal(genotype: Genotype) -> str:
    """The original repositories' Python literal, e.g.
    ``Genotype(normal=[('sep_conv_3x3', 0), ...], normal_concat=range(2, 6), ...)``."""
    g = validate(genotype)
    return (
        f"Genotype(normal={[tuple(p) for p in g.normal]!r}, normal_concat={_concat_literal(g.normal_concat)}, "
        f"reduce={[tuple(p) for p in g.reduce]!r}, reduce_concat={_concat_literal(g.reduce_concat)})"
    )


def _literal_concat(node: ast.AST) -> list[int]:
    # range(a, b) or range(b) is the only call allowed; everything else must be a plain literal.
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range" \
            and not node.keywords and 1 <= len(node.args) <= 2:
        bounds = [ast.literal_eval(a) for a in node.args]
        return list(range(*bounds))
    value = ast.literal_eval(node)
    return list(value)


def from_literal(text: str) -> Genotype:
    """Parse ``Genotype(normal=[...], normal_concat=..., reduce=[...], reduce_concat=...)`` (also
    ``NAME = Genotype(...)``) with :mod:`ast` only -- nothing is executed."""
    try:
        tree = ast.parse(text.strip(), mode="exec")
    except SyntaxError as exc:
        raise ValueError(f"not a Python Genotype(...) literal: {exc}") from exc
    if len(tree.body) != 1 or not isinstance(tree.body[0], (ast.Expr, ast.Assign)):
        raise ValueError("expected a single Genotype(...) expression")
    call = tree.body[0].value
    if not (isinstance(call, ast.Call) and isinstance(call.func, (ast.Name, ast.Attribute))
            and (getattr(call.func, "id", None) or getattr(call.func, "attr", None)) == "Genotype"):
        raise ValueError("expected Genotype(normal=..., normal_concat=..., reduce=..., reduce_concat=...)")
    fields: dict[str, ast.AST] = dict(zip(Genotype._fields, call.args))
    for kw in call.keywords:
        if kw.arg not in Genotype._fields:
            raise ValueError(f"unknown Genotype field {kw.arg!r}")
        fields[kw.arg] = kw.value
    missing = [f for f in Genotype._fields if f not in fields]
    if missing:
        raise ValueError(f"Genotype literal lacks {', '.join(missing)}")
    try:
        return validate(Genotype(
            normal=[tuple(p) for p in ast.literal_eval(fields["normal"])],
            normal_concat=_literal_concat(fields["normal_concat"]),
            reduce=[tuple(p) for p in ast.literal_eval(fields["reduce"])],
            reduce_concat=_literal_concat(fields["reduce_concat"]),
        ))
    except (ValueError, TypeError, SyntaxError) as exc:
        raise ValueError(f"invalid Genotype literal: {exc}") from exc


def save(genotype: Genotype, path: str | os.PathLike) -> None:
    """Write the genotype as JSON (atomically: a partial file never replaces an existing one)."""
    data = to_json(genotype)

    def write(f) -> None:
        json.dump(data, f, indent=2)
        f.write("\n")

    atomic_write(path, write)


def load(spec: str | os.PathLike) -> Genotype:
    """A genotype from a well-known name (``DARTS_V2``, see :mod:`.known`), a JSON file, a file
    holding the Python literal, or the literal itself."""
    text = os.fspath(spec)
    known = known_genotype(text)
    if known is not None:
        return known
    if os.path.isfile(text):
        return _load_file(text)
    if "Genotype(" in text:
        return from_literal(text)
    raise ValueError(
        f"{text!r} is neither a genotype file nor a known name; give a JSON file, a file holding a "
        f"Genotype(...) literal, or one of the known names {', '.join(KNOWN_GENOTYPES)}"
    )


def _load_file(path: str) -> Genotype:
    """A genotype file: JSON (:func:`to_json`'s layout) or the original repositories' literal."""
    try:
        with open(path) as f:
            content = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot be read as a genotype file ({exc})") from None
    try:
        return _parse_file_content(content)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def _parse_file_content(content: str) -> Genotype:
    if not content.lstrip().startswith("{"):
        return from_literal(content)
    try:
        data = json.loads(content)
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON ({exc})") from None
    return from_json(data)
