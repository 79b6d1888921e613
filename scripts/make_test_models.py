#!/usr/bin/env python3
"""Generate tiny ONNX models for fast, exact tests: DIR/<name>/1/model.onnx (+ DIR/<name>/labels.txt).

The model.toml manifests beside them are hand-written and committed; the .onnx files are
generated (gitignored). Output is deterministic, so rerunning is harmless.

Classifiers (kind = "classification"): tiny-mean, tiny-slow and tiny-nhwc-int32 all compute the same 10 logits from the per-channel mean colour of the image:

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
- tests/fixtures/fixed-batch.onnx: tiny-mean with the batch axis fixed to 1 (for the batching
  test: a model that cannot batch).
- tiny-nhwc-int32: input `input` int32 [N,224,224,3] (raw 0..255, NHWC like TFJS/MoveNet) ->
  Cast -> ReduceMean(H,W) -> *1/255 -> Gemm: the same logits as tiny-mean for the same pixels.
  Exercises the int32 / NHWC input path.

One model per other output kind. Their outputs are constants or simple functions of the image,
so a test can assert them exactly. All take float32 NCHW input with the manifests' usual
preprocessing (stretch resize, no crop, bilinear, mean 0, std 255, so each value is pixel/255).
Tensor values below are float32: 0.9 means float32(0.9) = 0.89999997615814..., so compare
floats with a tolerance (1e-6 is plenty) or in f32. Coordinates map back to a W x H original
with stretch resize as x_orig = x_model * W / input_width, y_orig = y_model * H / input_height
(for normalised coordinates: x_orig = x * W, y_orig = y * H). The worked examples use a solid
red (255, 0, 0) 64 x 48 (W x H) image, or a solid (10, 20, 30) 64 x 48 image where noted.

- tiny-pose (kind = "keypoints"): input `input` [N,3,64,64] -> `keypoints` float32 [N,1,3,3],
  one instance of 3 keypoints, each (y, x, score) normalised 0..1 to the model input (MoveNet
  convention). Constant: the graph consumes the input (keypoints = K + 0 * ReduceMean(input))
  but the values never depend on it:

    k  name        y     x     score   in a 64x48 original: x_px  y_px
    0  head        0.25  0.5   0.9                          32    12
    1  left_hand   0.5   0.25  0.8                          16    24
    2  right_hand  0.75  0.75  0.1                          48    36

  score_threshold = 0.0, so all three are reported (0.1 included); skeleton [[0,1],[0,2]].

- tiny-multipose (kind = "keypoints", output.persons = 3): input `input` [N,3,64,64] ->
  `persons` float32 [N,3,14]: per row 3 keypoints (y, x, score) then a box (ymin, xmin, ymax,
  xmax, score), normalised, constant (the same trick). In a 64x48 original (x*64, y*48):

    row  head (x, y)  left_hand  right_hand  box (x1, y1, x2, y2)  score  kept?
    0    (16, 12)     (8, 24)    (24, 24)    (4, 6, 28, 36)        0.6    yes, second
    1    (48, 12)     (40, 24)   (56, 24)    (36, 6, 60, 36)       0.8    yes, first (best)
    2    (32, 24) x3, score 0.1  —           (0, 0, 0, 0)          0.05   no: < person_score_threshold 0.3

  (All values are multiples of 1/16: exact in float32, and so are the mapped pixels.)

- tiny-detect (kind = "detection"): input `input` [N,3,100,100] -> `detections` float32 [N,4,6],
  rows (x1, y1, x2, y2, score, class) in model-input pixels, constant (same + 0 * mean trick).
  labels.txt: 0 cat, 1 dog.

    row  x1    y1    x2    y2    score class  64x48 original (x*0.64, y*0.48)   kept?
    0    25    25    75    75    0.9   1 dog  (16, 12, 48, 36)                  yes
    1    25    37.5  75    87.5  0.8   1 dog  (16, 18, 48, 42)                  no: IoU with row 0 = 0.6 > nms_iou 0.5
    2    0     0     12.5  50    0.7   0 cat  (0, 0, 8, 24)                     yes (no overlap)
    3    87.5  87.5  100   100   0.1   0 cat  (56, 42, 64, 48)                  no: score < 0.3

  With score_threshold 0.3 and NMS 0.5 (per class or across classes: the same here) the result,
  by descending score, is exactly: dog 0.9 (16, 12, 48, 36), cat 0.7 (0, 0, 8, 24) in original
  pixels. Without NMS row 1 would also appear; without the threshold, row 3.
  (All coordinates are multiples of 12.5, exact in float32, and so are the mapped values.)

- tiny-invert (kind = "image"): input `input` [N,3,32,32] -> `image` float32 [N,3,32,32] =
  1 - input (a depthwise 1x1 Conv, weight -1, bias 1): an image-to-image net, output range
  [0, 1] mapped linearly to 0..255. Solid (10, 20, 30) -> every pixel (245, 235, 225) exactly:
  1 - 10/255 in float32 is 0.9607843, * 255 = 245.0 in f32 (245.0000006 in f64), so rounding
  and truncation agree; likewise 235, 225. Red (255, 0, 0) -> cyan (0, 255, 255). The output
  is 32 x 32 (model-input size).

- tiny-embed (kind = "embedding"): input `input` [N,3,32,32] -> `embedding` float32 [N,4] =
  E @ m, m = per-channel mean colour as in tiny-mean, no bias, manifest normalize = true
  (L2). E rows (columns r, g, b):

    E = [[3, 0, 0],       red   (255,0,0)     -> [3, 4, 0, 0]  |5|        -> [0.6, 0.8, 0, 0]
         [4, 0, 0],       green (0,255,0)     -> [0, 0, 3, 4]  |5|        -> [0, 0, 0.6, 0.8]
         [0, 3, 0],       blue  (0,0,255)     -> [0, 0, 0, 5]  |5|        -> [0, 0, 0, 1]
         [0, 4, 5]]       white (255,255,255) -> [3, 4, 3, 9]  |sqrt 115| -> [0.27975, 0.37300, 0.27975, 0.83925]
                          black (0,0,0)       -> [0, 0, 0, 0]  |0|: normalising must not divide by zero

  Raw values for 0/255 colours are exact; the normalised ones are exact to float32 rounding.

- tiny-tensor (kind = "tensor"): input `input` [N,3,16,16] -> two outputs, `mean` float32 [N,3]
  (per-channel means, GlobalAveragePool) and `double` [N,3] (2 * mean). Solid (10, 20, 30) ->
  mean = (10, 20, 30) / 255 = [0.0392157, 0.0784314, 0.1176471],
  double = [0.0784314, 0.1568627, 0.2352941] (compare with ~1e-6: ORT sums 256 float32 values);
  red -> mean [1, 0, 0], double [2, 0, 0] exactly.

Usage: .cache/venv/bin/python scripts/make_test_models.py [--out-dir tests/models] [--check] [--time]
  --check runs every model with onnxruntime on the images documented here and asserts the
  documented outputs, including the post-processing a client does (thresholds, NMS, coordinate
  mapping, L2 normalisation, 0..255 mapping); --time also prints the median latency.
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

# Other output kinds (documented in the header).
POSE_SIZE = 64
POSE_KEYPOINTS = np.array([[[[0.25, 0.5, 0.9],     # head: (y, x, score), normalised
                             [0.5, 0.25, 0.8],     # left_hand
                             [0.75, 0.75, 0.1]]]], np.float32)  # right_hand -> [1,1,3,3]
MULTIPOSE_ROWS = np.array([[
    # head (y, x, s)        left_hand           right_hand          box (ymin, xmin, ymax, xmax, s)
    [0.25, 0.25, 0.9,      0.5, 0.125, 0.8,    0.5, 0.375, 0.7,    0.125, 0.0625, 0.75, 0.4375, 0.6],
    [0.25, 0.75, 0.9,      0.5, 0.625, 0.8,    0.5, 0.875, 0.7,    0.125, 0.5625, 0.75, 0.9375, 0.8],
    [0.5, 0.5, 0.1,        0.5, 0.5, 0.1,      0.5, 0.5, 0.1,      0.0, 0.0, 0.0, 0.0, 0.05],
]], np.float32)  # -> [1,3,14]
DETECT_SIZE = 100
DETECT_LABELS = ["cat", "dog"]
DETECTIONS = np.array([[[25, 25, 75, 75, 0.9, 1],        # kept
                        [25, 37.5, 75, 87.5, 0.8, 1],    # IoU 0.6 with row 0: suppressed by NMS 0.5
                        [0, 0, 12.5, 50, 0.7, 0],        # kept
                        [87.5, 87.5, 100, 100, 0.1, 0]]], np.float32)  # below score_threshold 0.3
INVERT_SIZE = 32
EMBED_SIZE = 32
EMBED_W = np.array([[3, 0, 0], [4, 0, 0], [0, 3, 0], [0, 4, 5]], np.float32)  # rows = dims, cols r, g, b
TENSOR_SIZE = 16


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


def make_model(name, nodes, inits, inp, outputs=None):
    """outputs: list of (name, shape) float32 graph outputs; default the classifiers' logits [N,10]."""
    outputs = outputs or [("logits", ["N", 10])]
    graph = helper.make_graph(nodes, name.replace("-", "_"), [inp],
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, shape) for o, shape in outputs],
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


def tiny_mean_batch1():
    """tiny-mean with its batch axis fixed to 1 (a model that cannot batch). Written to
    tests/fixtures/fixed-batch.onnx, outside the test model repository: the batching test
    pairs it with a manifest that declares [batching] and expects the load to be refused."""
    nodes, inits = [helper.make_node("GlobalAveragePool", ["input"], ["pooled"])], []
    head("pooled", nodes, inits)
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, SIZE, SIZE])
    return make_model("tiny-mean-batch1", nodes, inits, inp, [("logits", [1, 10])])


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


def nchw_input_of(size):
    return helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, size, size])


def constant_output(out, const, nodes, inits):
    """out = const + 0 * mean(input): a constant that still consumes the input, so the graph
    is a real function of it and the batch size follows N. const has batch dimension 1."""
    rank = const.ndim
    inits += [init("zero_scale", np.array(0.0, np.float32)), init("const_" + out, const),
              init("zero_shape", np.array([0] + [1] * (rank - 1), np.int64))]
    nodes += [helper.make_node("ReduceMean", ["input"], ["input_mean"], axes=[1, 2, 3], keepdims=1),
              helper.make_node("Mul", ["input_mean", "zero_scale"], ["zero4"]),
              # [N,1,1,1] -> [N,1,...] of the constant's rank (0 in a Reshape shape copies N)
              helper.make_node("Reshape", ["zero4", "zero_shape"], ["zero"]),
              helper.make_node("Add", ["zero", "const_" + out], [out])]


def tiny_pose():
    nodes, inits = [], []
    constant_output("keypoints", POSE_KEYPOINTS, nodes, inits)
    return make_model("tiny-pose", nodes, inits, nchw_input_of(POSE_SIZE), [("keypoints", ["N", 1, 3, 3])])


def tiny_multipose():
    nodes, inits = [], []
    constant_output("persons", MULTIPOSE_ROWS, nodes, inits)
    return make_model("tiny-multipose", nodes, inits, nchw_input_of(POSE_SIZE), [("persons", ["N", 3, 14])])


def tiny_detect():
    nodes, inits = [], []
    constant_output("detections", DETECTIONS, nodes, inits)
    return make_model("tiny-detect", nodes, inits, nchw_input_of(DETECT_SIZE), [("detections", ["N", 4, 6])])


def tiny_invert():
    # Depthwise 1x1 conv: out[c] = -1 * in[c] + 1
    inits = [init("inv_w", np.full((3, 1, 1, 1), -1.0, np.float32)), init("inv_b", np.ones(3, np.float32))]
    nodes = [helper.make_node("Conv", ["input", "inv_w", "inv_b"], ["image"], kernel_shape=[1, 1], group=3)]
    return make_model("tiny-invert", nodes, inits, nchw_input_of(INVERT_SIZE),
                      [("image", ["N", 3, INVERT_SIZE, INVERT_SIZE])])


def tiny_embed():
    inits = [init("embed_w", EMBED_W)]
    nodes = [helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
             helper.make_node("Flatten", ["pooled"], ["features"], axis=1),
             helper.make_node("Gemm", ["features", "embed_w"], ["embedding"], transB=1)]
    return make_model("tiny-embed", nodes, inits, nchw_input_of(EMBED_SIZE), [("embedding", ["N", 4])])


def tiny_tensor():
    inits = [init("two", np.array(2.0, np.float32))]
    nodes = [helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
             helper.make_node("Flatten", ["pooled"], ["mean"], axis=1),
             helper.make_node("Mul", ["mean", "two"], ["double"])]
    return make_model("tiny-tensor", nodes, inits, nchw_input_of(TENSOR_SIZE),
                      [("mean", ["N", 3]), ("double", ["N", 3])])


MODELS = {"tiny-mean": tiny_mean, "tiny-slow": tiny_slow, "tiny-nhwc-int32": tiny_nhwc_int32,
          "tiny-pose": tiny_pose, "tiny-multipose": tiny_multipose, "tiny-detect": tiny_detect, "tiny-invert": tiny_invert,
          "tiny-embed": tiny_embed, "tiny-tensor": tiny_tensor}
CLASSIFIERS = ("tiny-mean", "tiny-slow", "tiny-nhwc-int32")
MODEL_LABELS = {**{m: LABELS for m in CLASSIFIERS}, "tiny-detect": DETECT_LABELS}


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


def session(path):
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def solid_input(rgb, size, orig=(64, 48)):
    """A solid orig-sized (W x H) RGB image, stretched to size x size with Pillow's bilinear
    filter and scaled by 1/255, as the manifests say: float32 [1,3,size,size]."""
    from PIL import Image
    img = Image.new("RGB", orig, tuple(rgb)).resize((size, size), Image.BILINEAR)
    px = np.asarray(img, np.float32)
    assert (px == np.array(rgb, np.float32)).all(), "resizing a solid image must keep it solid"
    return (px / np.float32(255.0)).transpose(2, 0, 1)[None].copy()


def iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def nms(rows, score_threshold, iou_threshold):
    """Greedy per-class NMS over rows (x1, y1, x2, y2, score, class), by descending score."""
    keep = []
    for r in sorted((r for r in rows if r[4] >= score_threshold), key=lambda r: -r[4]):
        if all(k[5] != r[5] or iou(k, r) <= iou_threshold for k in keep):
            keep.append(r)
    return keep


def check_model(path, name):
    """Run the model on the documented images and assert the documented outputs."""
    sess = session(path)
    W, H = 64, 48  # the worked example's original size
    red, dark = (255, 0, 0), (10, 20, 30)
    if name == "tiny-pose":
        (kp,) = sess.run(["keypoints"], {"input": solid_input(red, POSE_SIZE)})
        assert kp.shape == (1, 1, 3, 3) and (kp == POSE_KEYPOINTS).all(), kp
        # the constant does not depend on the image, and the batch dimension follows N
        (kp2,) = sess.run(["keypoints"], {"input": np.concatenate(
            [solid_input(dark, POSE_SIZE), solid_input((255, 255, 255), POSE_SIZE)])})
        assert kp2.shape == (2, 1, 3, 3) and (kp2 == POSE_KEYPOINTS).all()
        orig = [(float(x) * W, float(y) * H, float(s)) for y, x, s in kp[0, 0]]
        assert orig == [(32, 12, np.float32(0.9)), (16, 24, np.float32(0.8)), (48, 36, np.float32(0.1))], orig
        print(f"  {name} red {W}x{H}: keypoints (y, x, score) {kp[0, 0].tolist()}"
              f" -> original (x, y) px {[o[:2] for o in orig]}")
    elif name == "tiny-detect":
        (det,) = sess.run(["detections"], {"input": solid_input(red, DETECT_SIZE)})
        assert det.shape == (1, 4, 6) and (det == DETECTIONS).all(), det
        assert abs(iou(det[0, 0], det[0, 1]) - 0.6) < 1e-6
        kept = nms(det[0].tolist(), 0.3, 0.5)
        sx, sy = W / DETECT_SIZE, H / DETECT_SIZE
        result = [(DETECT_LABELS[int(c)], round(s, 6), (x1 * sx, y1 * sy, x2 * sx, y2 * sy))
                  for x1, y1, x2, y2, s, c in kept]
        assert result == [("dog", 0.9, (16, 12, 48, 36)), ("cat", 0.7, (0, 0, 8, 24))], result
        print(f"  {name} red {W}x{H}: after threshold 0.3 + NMS 0.5 -> {result} (original px)")
    elif name == "tiny-invert":
        x = solid_input(dark, INVERT_SIZE)
        (img,) = sess.run(["image"], {"input": x})
        assert img.shape == (1, 3, INVERT_SIZE, INVERT_SIZE) and (img == np.float32(1) - x).all()
        first = img[0, :, 0, 0].tolist()
        # range [0, 1] -> 0..255, clamped, rounded; f32 and f64 arithmetic agree
        for v in (img, img.astype(np.float64)):
            px = np.clip(np.round((v - 0.0) / (1.0 - 0.0) * 255.0), 0, 255).astype(np.uint8)
            assert (px[0].transpose(1, 2, 0) == np.array([245, 235, 225], np.uint8)).all()
        px = np.clip(np.floor(img.astype(np.float64) * 255.0), 0, 255)  # truncation agrees too
        assert (px[0, :, 0, 0] == [245, 235, 225]).all()
        (cyan,) = sess.run(["image"], {"input": solid_input(red, INVERT_SIZE)})
        assert (np.round(cyan * 255)[0].transpose(1, 2, 0) == [0, 255, 255]).all()
        print(f"  {name} (10,20,30) {W}x{H}: image[0,:,y,x] {first} -> pixels (245, 235, 225);"
              f" red -> (0, 255, 255)")
    elif name == "tiny-embed":
        cases = [(red, [3, 4, 0, 0], [0.6, 0.8, 0, 0]), ((0, 255, 0), [0, 0, 3, 4], [0, 0, 0.6, 0.8]),
                 ((0, 0, 255), [0, 0, 0, 5], [0, 0, 0, 1]),
                 ((255, 255, 255), [3, 4, 3, 9], [0.27975, 0.37300, 0.27975, 0.83925]),
                 ((0, 0, 0), [0, 0, 0, 0], [0, 0, 0, 0])]
        for rgb, raw, normed in cases:
            (e,) = sess.run(["embedding"], {"input": solid_input(rgb, EMBED_SIZE)})
            assert e.shape == (1, 4) and (e[0] == np.array(raw, np.float32)).all(), (rgb, e)
            norm = float(np.linalg.norm(e[0].astype(np.float64)))
            n = e[0] / norm if norm > 0 else e[0]
            assert np.abs(n - np.array(normed)).max() < 1e-5, (rgb, n)
            print(f"  {name} {rgb}: embedding {e[0].tolist()} -> normalised {np.round(n, 6).tolist()}")
    elif name == "tiny-tensor":
        for rgb, tol in [(dark, 1e-6), (red, 0.0)]:
            x = solid_input(rgb, TENSOR_SIZE)
            mean, double = sess.run(["mean", "double"], {"input": x})
            want = np.array(rgb, np.float64) / 255.0
            assert mean.shape == double.shape == (1, 3)
            assert np.abs(mean[0] - want).max() <= tol and np.abs(double[0] - 2 * want).max() <= 2 * tol, \
                (rgb, mean, double)
            assert (double == 2 * mean).all()
            print(f"  {name} {rgb}: mean {mean[0].tolist()} double {double[0].tolist()}"
                  f" (max err {np.abs(mean[0] - want).max():.1e})")
    else:
        raise ValueError(name)
    print(f"  {name}: ok")


def time_run(path, name):
    """Median single-thread latency on a zero input of the model's shape."""
    sess = session(path)
    inp = sess.get_inputs()[0]
    x = np.zeros([1] + inp.shape[1:], np.float32)
    times = []
    for _ in range(50):
        t0 = time.perf_counter()
        sess.run(None, {inp.name: x})
        times.append(time.perf_counter() - t0)
    print(f"  {name}: median {np.median(times) * 1000:.3f} ms/run (1 thread)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out-dir", default="tests/models")
    ap.add_argument("--time", action="store_true", help="also run each model with onnxruntime and time it")
    ap.add_argument("--check", action="store_true",
                    help="run each model with onnxruntime and assert the documented outputs")
    args = ap.parse_args()
    for name, build in MODELS.items():
        path = os.path.join(args.out_dir, name, "1", "model.onnx")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        onnx.save_model(build(), path + ".tmp")
        os.replace(path + ".tmp", path)
        if name in MODEL_LABELS:
            with open(os.path.join(args.out_dir, name, "labels.txt"), "w", newline="\n") as f:
                f.write("\n".join(MODEL_LABELS[name]) + "\n")
        print(f"wrote {path} ({os.path.getsize(path)} bytes)")
        if name in CLASSIFIERS:
            if args.check or args.time:
                time_model(path, name)  # asserts the documented logits, prints the latency
            continue
        if args.check:
            check_model(path, name)
        if args.time:
            time_run(path, name)
    fixture = os.path.join(args.out_dir, os.pardir, "fixtures", "fixed-batch.onnx")
    os.makedirs(os.path.dirname(fixture), exist_ok=True)
    onnx.save_model(tiny_mean_batch1(), fixture + ".tmp")
    os.replace(fixture + ".tmp", fixture)
    print(f"wrote {os.path.normpath(fixture)} ({os.path.getsize(fixture)} bytes)")


if __name__ == "__main__":
    main()
