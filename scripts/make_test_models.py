#!/usr/bin/env python3
"""Generate tiny ONNX classifiers for fast, exact tests: DIR/<name>/1/model.onnx + DIR/<name>/labels.txt.

The model.toml manifests beside them are hand-written and committed; the .onnx files are
generated (gitignored). Output is deterministic, so rerunning is harmless.

All three models compute the same 10 logits from the per-channel mean colour of the image:

    m = (r, g, b) = mean over all pixels of the preprocessed input, per channel
    logits[k] = W[k][0]*r + W[k][1]*g + W[k][2]*b + B[k]

With the manifests' preprocessing (mean 0, std 255, so each value is pixel/255), a solid
colour image (R, G, B) gives exactly m = (R/255, G/255, B/255) (resizing a solid image keeps it
solid). The worker then applies softmax. Colours whose components are 0 or 255 give exact
logits; others differ by up to ~2e-4 (ORT sums 50176 float32 values), so compare with ~1e-3. Weights (W row = class, columns r, g, b) and biases B:

    k  label       W[k]           B[k]   red(255,0,0)  white  black  yellow(255,255,0)
    0  red         ( 4,  0,  0)    0      4             4      0      4
    1  green       ( 0,  4,  0)    0      0             4      0      4
    2  blue        ( 0,  0,  4)    0      0             4      0      0
    3  white       ( 2,  2,  2)    0      2             6      0      4
    4  black       (-2, -2, -2)    2      0            -4      2     -2
    5  yellow      ( 3,  3, -3)    0      3             3      0      6
    6  cyan        (-3,  3,  3)    0     -3             3      0      0
    7  magenta     ( 3, -3,  3)    0      3             3      0      0
    8  const-one   ( 0,  0,  0)    1      1             1      1      1
    9  const-zero  ( 0,  0,  0)    0      0             0      0      0

e.g. pure red -> logits [4,0,0,2,0,3,-3,3,1,0] -> softmax top-1 "red" (p = e^4 / sum e^logits ~ 0.56).

Models:
- tiny-mean: input `input` float32 [N,3,224,224] -> GlobalAveragePool -> Flatten -> Gemm -> `logits` [N,10].
  ~0.02 ms per run.
- tiny-slow: same input/output and the same logits, but first a chain of 3x3 convolutions that
  copy the image through unchanged (identity kernels, widened to 32 channels so each layer
  costs real work): ~28 ms per image on one core (measured; scales with batch size).
  For timeout / kill / drain tests.
- tiny-nhwc-int32: input `input` int32 [N,224,224,3] (raw 0..255, NHWC like TFJS/MoveNet) ->
  Cast -> ReduceMean(H,W) -> *1/255 -> Gemm: the same logits as tiny-mean for the same pixels.
  Exercises the int32 / NHWC input path.

Usage: .cache/venv/bin/python scripts/make_test_models.py [--out-dir tests/models] [--time]
"""
import argparse
import os
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

LABELS = ["red", "green", "blue", "white", "black", "yellow", "cyan", "magenta", "const-one", "const-zero"]
W = np.array([[4, 0, 0], [0, 4, 0], [0, 0, 4], [2, 2, 2], [-2, -2, -2],
              [3, 3, -3], [-3, 3, 3], [3, -3, 3], [0, 0, 0], [0, 0, 0]], dtype=np.float32)
B = np.array([0, 0, 0, 0, 2, 0, 0, 0, 1, 0], dtype=np.float32)

SIZE = 224
SLOW_WIDTH = 32   # channels in the slow trunk
SLOW_LAYERS = 6   # 32->32 3x3 convs at 224x224: ~28 ms per image on one core
OPSET = 13


def init(name, arr):
    return numpy_helper.from_array(np.ascontiguousarray(arr), name)


def head(x, nodes, inits, flatten=True):
    """Per-channel mean (already pooled to [N,3,1,1] or [N,3]) -> Gemm -> logits."""
    if flatten:
        nodes.append(helper.make_node("Flatten", [x], ["features"], axis=1))
        x = "features"
    inits += [init("fc_w", W), init("fc_b", B)]
    nodes.append(helper.make_node("Gemm", [x, "fc_w", "fc_b"], ["logits"], transB=1))


def identity_conv(cout, cin):
    """3x3 kernel that copies input channel i to output channel i (i < min(cout, cin)); zeros elsewhere."""
    w = np.zeros((cout, cin, 3, 3), np.float32)
    for i in range(min(cout, cin)):
        w[i, i, 1, 1] = 1.0
    return w


def make_model(name, nodes, inits, inp):
    graph = helper.make_graph(nodes, name.replace("-", "_"), [inp],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
                              initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="inferq-make-test-models")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def nchw_input():
    return helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])


def tiny_mean():
    nodes, inits = [helper.make_node("GlobalAveragePool", ["input"], ["pooled"])], []
    head("pooled", nodes, inits)
    return make_model("tiny-mean", nodes, inits, nchw_input())


def tiny_slow():
    nodes, inits, x = [], [], "input"
    shapes = [(SLOW_WIDTH, 3)] + [(SLOW_WIDTH, SLOW_WIDTH)] * SLOW_LAYERS + [(3, SLOW_WIDTH)]
    for i, (cout, cin) in enumerate(shapes):
        inits.append(init(f"conv{i}_w", identity_conv(cout, cin)))
        # Relu keeps it a realistic conv+activation chain; a no-op here since inputs are >= 0.
        nodes += [helper.make_node("Conv", [x, f"conv{i}_w"], [f"conv{i}"], kernel_shape=[3, 3],
                                   pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"conv{i}"], [f"relu{i}"])]
        x = f"relu{i}"
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["pooled"]))
    head("pooled", nodes, inits)
    return make_model("tiny-slow", nodes, inits, nchw_input())


def tiny_nhwc_int32():
    inits = [init("inv255", np.array(1.0 / 255.0, np.float32))]
    nodes = [helper.make_node("Cast", ["input"], ["input_f"], to=TensorProto.FLOAT),
             # opset 13 ReduceMean takes axes as an attribute (input form is opset 18+)
             helper.make_node("ReduceMean", ["input_f"], ["mean255"], axes=[1, 2], keepdims=0),
             helper.make_node("Mul", ["mean255", "inv255"], ["pooled"])]
    head("pooled", nodes, inits, flatten=False)
    inp = helper.make_tensor_value_info("input", TensorProto.INT32, ["N", SIZE, SIZE, 3])
    return make_model("tiny-nhwc-int32", nodes, inits, inp)


MODELS = {"tiny-mean": tiny_mean, "tiny-slow": tiny_slow, "tiny-nhwc-int32": tiny_nhwc_int32}


def time_model(path, name):
    """Median single-thread latency and a check that the model computes the documented logits."""
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    times = []
    # (colour, tolerance): 0/255 components are exact (sums of 1.0 are exact in float32);
    # others are not, since ORT sums 50176 float32 values (observed error ~2e-4).
    for rgb, tol in [((255, 0, 0), 1e-6), ((200, 100, 50), 1e-3)]:
        rgb = np.array(rgb, np.float32)
        if name == "tiny-nhwc-int32":
            x = np.broadcast_to(rgb.astype(np.int32), (1, SIZE, SIZE, 3)).copy()
        else:
            x = np.broadcast_to((rgb / 255.0)[None, :, None, None], (1, 3, SIZE, SIZE)).astype(np.float32)
        expected = W @ (rgb / 255.0) + B
        for _ in range(20):
            t0 = time.perf_counter()
            (logits,) = sess.run(["logits"], {"input": x})
            times.append(time.perf_counter() - t0)
        err = float(np.abs(logits[0] - expected).max())
        assert err < tol, (name, rgb, logits[0], expected)
        print(f"  {name} rgb={rgb.astype(int).tolist()}: max |logit err| {err:.1e}")
    print(f"  {name}: median {np.median(times) * 1000:.3f} ms/run (1 thread)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out-dir", default="tests/models")
    ap.add_argument("--time", action="store_true", help="also run each model with onnxruntime and time it")
    args = ap.parse_args()
    for name, build in MODELS.items():
        path = os.path.join(args.out_dir, name, "1", "model.onnx")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        onnx.save_model(build(), path + ".tmp")
        os.replace(path + ".tmp", path)
        with open(os.path.join(args.out_dir, name, "labels.txt"), "w", newline="\n") as f:
            f.write("\n".join(LABELS) + "\n")
        print(f"wrote {path} ({os.path.getsize(path)} bytes)")
        if args.time:
            time_model(path, name)


if __name__ == "__main__":
    main()
