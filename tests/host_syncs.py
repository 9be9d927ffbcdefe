"""Where a CUDA run would wait for the device, found on a CPU.

On CUDA the host waits for the device's queue to drain whenever it needs a value the device
computes (``.item()``, ``bool()``, ``float()``, ``.tolist()``, ``.cpu()``, ``.numpy()``), runs an op
whose output size depends on values (``nonzero``, ``masked_select``, boolean indexing,
``unique``), or copies host data to the device from ordinary memory (``torch.tensor(...,
device=...)``). ``torch.cuda.set_sync_debug_mode`` catches these on a GPU only;
they go through the same few aten ops and tensor methods on any device, so :class:`HostSyncs`
records them on a CPU, with the line that made each, and the CPU suite checks every method's
search iteration for them.

Two sites read host memory on a CPU only, by construction, and are not counted:

* torch's optimizers read a non-capturable step count with ``.item()`` (``_get_value``); on CUDA
  flatarch builds the architecture Adam with ``capturable=True`` (``flatarch/base.py``), so the
  count stays on the device;
* :meth:`flatarch.deferred.PendingCheck.first_bad` reads the NaN/Inf flags from pinned host memory
  once their copy's event has completed; on a CPU the flags are the host tensor itself.

So is :func:`flatarch.transfer.to_device`: a page-locked, non-blocking copy, which does not wait.
"""

from __future__ import annotations

import collections
import os
import traceback
from typing import NamedTuple

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten

#: aten ops that read a value on the host or size their output by values
_READS = frozenset({
    aten._local_scalar_dense.default, aten.is_nonzero.default, aten.equal.default, aten.nonzero.default,
    aten.masked_select.default, aten._unique2.default, aten.unique_dim.default, aten.unique_consecutive.default,
    aten.repeat_interleave.Tensor,
})
#: tensor methods that hand values to the host (none goes through the dispatcher on a CPU tensor)
_METHODS = ("tolist", "numpy", "cpu")
#: (file ending, function): the sites of the module docstring
ALLOWED = (
    (os.path.join("torch", "optim", "optimizer.py"), "_get_value"),
    (os.path.join("flatarch", "deferred.py"), "first_bad"),
    (os.path.join("flatarch", "transfer.py"), "to_device"),
)


#: files of torch's dispatch and compile wrappers: never a site (nor is this module, see _site)
_MACHINERY = (os.path.join("torch", "utils", "_python_dispatch.py"), os.path.join("torch", "_compile.py"),
              os.path.join("torch", "_dynamo", "eval_frame.py"))


def _site() -> traceback.FrameSummary:
    """The innermost frame outside this module and torch's dispatch and compile wrappers."""
    for frame in reversed(traceback.extract_stack()):
        if frame.filename != __file__ and not frame.filename.endswith(_MACHINERY):
            return frame
    raise AssertionError("no caller frame")


def _boolean_index(func, args) -> bool:
    return func is aten.index.Tensor and any(i is not None and i.dtype == torch.bool for i in args[1])


class HostSyncs(TorchDispatchMode):
    """``with HostSyncs() as syncs: ...``; then ``syncs.found`` counts the :class:`Site` of each
    wait (allowed ones left out) and :meth:`report` lists them."""

    def __init__(self):
        super().__init__()
        self.found: collections.Counter[Site] = collections.Counter()
        self._saved: dict[tuple[object, str], object] = {}  # (owner, name): the original attribute

    def _record(self, what: str) -> None:
        frame = _site()
        if any(frame.filename.endswith(end) and frame.name == name for end, name in ALLOWED):
            return
        self.found[Site(what, os.path.relpath(frame.filename), frame.lineno, frame.name, frame.line)] += 1

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in _READS or _boolean_index(func, args):
            self._record(str(func.overloadpacket.__name__))
        return func(*args, **(kwargs or {}))

    def _wrap(self, owner, name: str, counts) -> None:
        original = getattr(owner, name)
        self._saved[(owner, name)] = original

        def wrapper(*args, **kwargs):
            if counts(*args, **kwargs):
                self._record(name)
            return original(*args, **kwargs)

        setattr(owner, name, wrapper)

    def __enter__(self):
        for name in _METHODS:
            self._wrap(torch.Tensor, name, lambda *a, **k: True)
        # host data made into a device tensor: an upload on CUDA
        for name in ("tensor", "as_tensor"):
            self._wrap(torch, name, lambda *a, device=None, **k: device is not None)
        return super().__enter__()

    def __exit__(self, *exc):
        for (owner, name), original in self._saved.items():
            setattr(owner, name, original)
        self._saved.clear()
        return super().__exit__(*exc)

    def report(self) -> str:
        return "\n".join(f"{n} x {site}" for site, n in self.found.most_common())


class Site(NamedTuple):
    """Where a wait was made: what waited, and the file, line, function and code that called it."""

    what: str
    file: str
    line: int
    function: str
    code: str

    def __str__(self) -> str:
        return f"{self.what} at {self.file}:{self.line} in {self.function}: {self.code}"

