#!/usr/bin/env python3
"""Convert a TensorFlow-family model to ONNX and check it against the original: the Python half
of `inferq models import` (client/src/import.rs embeds this file and runs it).

Sources (the format is recognised from the path, see detect_format):
  SavedModel directory   tf.saved_model.load, signature `serving_default`, tf2onnx from_function
  Keras .keras / .h5     keras.models.load_model (Keras 3; tf_keras as a fallback), from_function
  TF.js layers model     tensorflowjs' own Keras loader (keras_tfjs_loader), then from_function
  TF.js graph model      tf2onnx's TF.js reader (the `tf2onnx.convert --tfjs` entry point)
  TFLite .tflite         tf2onnx.convert.from_tflite
  ONNX .onnx             no conversion (TensorFlow is not imported: .cache/venv suffices)

Why these converters: they are the maintained ones (tf2onnx for TF -> ONNX, Google's
tensorflowjs for TF.js layers models); this script only glues them together, reads the
signature and refuses what InferQ cannot serve.

The check: one sample input (seeded random pixels, normalised with the given mean/std for float
inputs, so it is the kind of tensor the service will feed) runs through ONNX Runtime and
through the original framework (Keras, the SavedModel signature, TFLite's interpreter,
tf_keras for TF.js layers models, TensorFlow running the TF.js graph rebuilt as a GraphDef).
max_abs_diff is the largest absolute difference over all outputs; the import is refused when
it exceeds tolerance x output scale, where the output scale is the largest absolute value of
the original's outputs (1 if they are all zero).

Output: the ONNX file at --out, and one JSON document on stdout (format, input name/dtype/
layout/size, output names/shapes, check results, timings). Errors: one line on stderr,
`error: <what>: <detail>`, exit status 2 for a refusal (unknown format, unreadable model,
missing signature, unsupported op, wrong layout, tolerance exceeded) and 1 for anything else
(for instance TensorFlow not importable).

Usage: python import_model.py --source PATH --out model.onnx [--tolerance 1e-3]
       [--mean a,b,c] [--std a,b,c] [--size WxH] [--opset 13]
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import types

import numpy as np

OPSET = 13
ONNX_DTYPES = {1: "float32", 2: "uint8", 6: "int32"}
NP_DTYPES = {"float32": np.float32, "uint8": np.uint8, "int32": np.int32}
TF_ONLY = ("savedmodel", "keras", "h5", "tfjs_layers", "tfjs_graph", "tflite")


class Refusal(Exception):
    """The model cannot be imported as it is: exit status 2 with a one-line reason."""

    def __init__(self, what, detail):
        super().__init__(f"{what}: {detail}")


class Failure(Exception):
    """The environment or a tool failed: exit status 1."""


def one_line(e):
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".strip().rstrip(":")


def detect_format(src):
    if not os.path.exists(src):
        raise Refusal("not found", src)
    if os.path.isdir(src):
        if any(os.path.exists(os.path.join(src, f)) for f in ("saved_model.pb", "saved_model.pbtxt")):
            return "savedmodel"
        if os.path.exists(os.path.join(src, "model.json")):
            return tfjs_format(os.path.join(src, "model.json"))
        raise Refusal("unknown format", f"{src} is a directory without saved_model.pb or model.json")
    lower = src.lower()
    if lower.endswith(".json"):
        return tfjs_format(src)
    for ext, fmt in ((".keras", "keras"), (".h5", "h5"), (".hdf5", "h5"), (".tflite", "tflite"),
                     (".onnx", "onnx")):
        if lower.endswith(ext):
            return fmt
    raise Refusal("unknown format", f"{src}: expected a SavedModel directory, .keras, .h5, "
                  "a TF.js model.json (or its folder), .tflite or .onnx")


def tfjs_format(path):
    try:
        with open(path, "rb") as f:
            model = json.load(f)
        topology = model["modelTopology"]
    except (ValueError, KeyError, TypeError) as e:
        raise Refusal("unknown format", f"{path} is not a TF.js model.json ({one_line(e)})")
    fmt = model.get("format") or topology.get("format")
    if fmt is None:
        fmt = "layers-model" if "keras_version" in topology else "graph-model"
    if fmt == "layers-model":
        return "tfjs_layers"
    if fmt == "graph-model":
        return "tfjs_graph"
    raise Refusal("unknown format", f"{path}: TF.js format `{fmt}`")


def import_tf(fmt):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        import tensorflow as tf
        if not hasattr(np, "product"):  # tf2onnx 1.17 predates numpy 2
            np.product = np.prod
        import tf2onnx  # noqa: F401
    except ImportError as e:
        raise Failure(f"{fmt} needs TensorFlow and tf2onnx, which {sys.executable} cannot import "
                      f"({one_line(e)}); run `make models-seed` or "
                      "pip install -r scripts/requirements-extra.txt, and pass that python "
                      "with --python or INFERQ_IMPORT_PYTHON")
    tf.get_logger().setLevel("ERROR")
    import logging
    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    return tf


def import_tfjs():
    """tensorflowjs imports three modules its loaders never call and that cannot be installed
    next to tensorflow-cpu 2.21 (scripts/requirements-tfjs.txt): empty stand-ins first."""
    for name in ("tensorflow_decision_forests", "tensorflow_hub",
                 "tensorflowjs.converters.jax_conversion"):
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules["tensorflowjs.converters.jax_conversion"].convert_jax = None
    try:
        from tensorflowjs.converters import keras_tfjs_loader
    except ImportError as e:
        raise Failure(f"TF.js layers models need tensorflowjs, which {sys.executable} cannot "
                      f"import ({one_line(e)}); run `make models-seed` or pip install --no-deps "
                      "-r scripts/requirements-tfjs.txt")
    return keras_tfjs_loader


# ---------------------------------------------------------------------------------------------
# Loading and converting. Each returns (onnx ModelProto, original) where original(x) gives the
# original framework's outputs as a dict keyed by the ONNX output names, or a list in the ONNX
# output order.

def single_input(specs, where):
    if len(specs) != 1:
        names = ", ".join(str(n) for n in specs)
        raise Refusal("wrong inputs", f"{where} has {len(specs)} inputs ({names}); "
                      "InferQ feeds one image tensor")


def convert_callable(tf, call, shape, dtype, name, opset):
    """tf2onnx from_function on call(x) with one input of `shape` (batch left dynamic)."""
    import tf2onnx
    shape = [None] + list(shape[1:])
    spec = (tf.TensorSpec(shape, dtype, name=name),)
    fn = tf.function(call)
    try:
        proto, _ = tf2onnx.convert.from_function(fn, input_signature=spec, opset=opset)
    except Exception as e:  # tf2onnx raises many types; the message is what matters
        raise Refusal("conversion failed", one_line(e))

    def original(x):
        return [np.asarray(t) for t in tf.nest.flatten(call(tf.constant(x)))]
    return proto, original


def load_keras(tf, src, fmt, opset):
    if fmt == "tfjs_layers":
        loader = import_tfjs()
        path = os.path.join(src, "model.json") if os.path.isdir(src) else src
        try:
            model = loader.load_keras_model(path)
        except Exception as e:
            raise Refusal("unreadable model", f"{src}: {one_line(e)}")
    else:
        import keras
        try:
            model = keras.models.load_model(src, compile=False)
        except Exception as e:
            first = e
            try:  # a Keras 2 file Keras 3 cannot read
                import tf_keras
                model = tf_keras.models.load_model(src, compile=False)
            except Exception:
                raise Refusal("unreadable model", f"{src}: {one_line(first)}")
    single_input(model.inputs, "the Keras model")
    inp = model.inputs[0]
    name = (getattr(inp, "name", None) or "input").split(":")[0]
    return convert_callable(tf, lambda x: model(x, training=False), tuple(inp.shape),
                            inp.dtype, name, opset)


def load_savedmodel(tf, src, opset):
    try:
        loaded = tf.saved_model.load(src)
    except Exception as e:
        raise Refusal("unreadable model", f"{src}: {one_line(e)}")
    sigs = dict(loaded.signatures)
    if "serving_default" not in sigs:
        raise Refusal("missing signature", f"{src} has no `serving_default` signature "
                      f"(it has: {', '.join(sigs) or 'none'})")
    sig = sigs["serving_default"]
    inputs = sig.structured_input_signature[1]
    single_input(inputs, "the serving_default signature")
    ((name, spec),) = inputs.items()
    return convert_callable(tf, lambda x: sig(**{name: x}), tuple(spec.shape), spec.dtype,
                            name, opset)


def load_tflite(tf, src, opset):
    import tf2onnx
    try:
        interp = tf.lite.Interpreter(model_path=src)
        interp.allocate_tensors()
    except Exception as e:
        raise Refusal("unreadable model", f"{src}: {one_line(e)}")
    single_input(interp.get_input_details(), "the TFLite model")
    try:
        proto, _ = tf2onnx.convert.from_tflite(src, opset=opset)
    except Exception as e:
        raise Refusal("conversion failed", one_line(e))

    def original(x):
        interp.set_tensor(interp.get_input_details()[0]["index"], x)
        interp.invoke()
        return {d["name"]: interp.get_tensor(d["index"]) for d in interp.get_output_details()}
    return proto, original


def op_def(name):
    from tensorflow.python.framework import op_def_registry
    for n in (name, "_" + name):
        d = op_def_registry.get(n)
        if d is not None:
            return d
    return None


def patch_tfjs_graph(model):
    """What the TF.js converter writes differently from TensorFlow's GraphDef: fused ops lose
    their `TArgs` (num_args copies of T), TopKV2 its `index_type`, and empty list attributes
    (`explicit_paddings: {list: {}}`) and the converter's `_input_shapes` annotations (a list
    of shapes) make tf2onnx build invalid ONNX attributes. TensorFlow fills the former from
    the op's defaults and ignores the latter, so both are dropped."""
    defs = {}
    for node in model["modelTopology"].get("node", []):
        op, attr = node["op"], node.setdefault("attr", {})
        for k in [k for k in attr if k.startswith("_")]:
            del attr[k]
        if op not in defs:
            defs[op] = op_def(op)
        d = defs[op]
        if d is None:
            continue
        has = {a.name: a for a in d.attr}
        if "TArgs" in has and "TArgs" not in attr:
            n = int(attr.get("num_args", {}).get("i", 0))
            attr["TArgs"] = {"list": {"type": [attr.get("T", {}).get("type", "DT_FLOAT")] * n}}
        if "index_type" in has and "index_type" not in attr:
            attr["index_type"] = {"type": "DT_INT32"}
        for k in [k for k, v in attr.items() if v == {"list": {}}]:
            if k in has and has[k].HasField("default_value"):
                del attr[k]


def load_tfjs_graph(tf, src, opset, work):
    from tf2onnx import tfjs_utils
    import tf2onnx.convert
    path = os.path.join(src, "model.json") if os.path.isdir(src) else src
    model, _ = tfjs_utils.read_model_json(path)
    patch_tfjs_graph(model)
    # A patched copy beside links to the shards (tf2onnx reads them relative to model.json).
    copy = os.path.join(work, "tfjs")
    os.makedirs(copy)
    for group in model.get("weightsManifest", []):
        for shard in group["paths"]:
            shutil.copyfile(os.path.join(os.path.dirname(path), shard), os.path.join(copy, shard))
    with open(os.path.join(copy, "model.json"), "w") as f:
        json.dump(model, f)
    out = os.path.join(work, "tfjs.onnx")
    argv = sys.argv
    sys.argv = ["tf2onnx.convert", "--tfjs", os.path.join(copy, "model.json"), "--output", out,
                "--opset", str(opset)]
    try:
        tf2onnx.convert.main()
    except SystemExit as e:
        raise Refusal("conversion failed", f"tf2onnx exited with {e.code}")
    except Exception as e:
        raise Refusal("conversion failed", one_line(e))
    finally:
        sys.argv = argv
    import onnx
    return onnx.load(out), tfjs_graph_runner(tf, model, copy)


def tfjs_graph_runner(tf, model, folder):
    """The TF.js graph run by TensorFlow: the topology is a GraphDef in JSON, the weights are
    the Const nodes' values (stored in the shards); TF.js renames one fused op."""
    from google.protobuf import json_format
    from tf2onnx import tfjs_utils
    weights, data = {}, b""
    for group in model["weightsManifest"]:
        for shard in group["paths"]:
            with open(os.path.join(folder, shard), "rb") as f:
                data += f.read()
    offset = 0
    for group in model["weightsManifest"]:
        for w in group["weights"]:
            name, arr, size = tfjs_utils.read_tfjs_weight(w, data, offset)
            weights[name] = arr
            offset += size
    graph_def = tf.compat.v1.GraphDef()
    for node in model["modelTopology"]["node"]:
        nd = json_format.ParseDict(node, graph_def.node.add(), ignore_unknown_fields=True)
        if nd.op == "FusedDepthwiseConv2dNative":
            nd.op = "_FusedDepthwiseConv2dNative"
        if nd.op == "Const" and nd.name in weights:
            nd.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(weights[nd.name]))
    sig = model.get("signature", {})
    inputs = {k: v["name"] for k, v in sig.get("inputs", {}).items()}
    outputs = {k: v["name"] for k, v in sig.get("outputs", {}).items()}
    if not inputs:
        inputs = {n.name: n.name + ":0" for n in graph_def.node if n.op == "Placeholder"}
    single_input(inputs, "the TF.js graph")
    (feed,) = inputs.values()
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    sess = tf.compat.v1.Session(graph=graph)

    def original(x, names):
        fetch = [outputs.get(n, n if ":" in n else n + ":0") for n in names]
        return dict(zip(names, sess.run(fetch, {feed: x})))
    original.wants_names = True
    return original


def load_onnx(src):
    import onnx
    try:
        return onnx.load(src), None
    except Exception as e:
        raise Refusal("unreadable model", f"{src}: {one_line(e)}")


# ---------------------------------------------------------------------------------------------
# Signature, check, summary

def unsupported_ops(proto):
    import onnx
    bad = set()

    def walk(graph):
        for n in graph.node:
            if n.domain not in ("", "ai.onnx", "com.microsoft") or \
                    (n.domain in ("", "ai.onnx") and not onnx.defs.has(n.op_type)):
                bad.add(f"{n.domain + '.' if n.domain else ''}{n.op_type}")
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    walk(a.g)
                for g in a.graphs:
                    walk(g)
    walk(proto.graph)
    return sorted(bad)


def dims(value):
    return [d.dim_value if d.HasField("dim_value") else None
            for d in value.type.tensor_type.shape.dim]


def input_signature(proto, fmt, size):
    init = {i.name for i in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in init]
    single_input([i.name for i in inputs], "the model")
    inp = inputs[0]
    elem = inp.type.tensor_type.elem_type
    if elem not in ONNX_DTYPES:
        import onnx
        raise Refusal("unsupported input dtype", f"input `{inp.name}` is "
                      f"{onnx.TensorProto.DataType.Name(elem).lower()}; InferQ feeds float32, "
                      "uint8 or int32")
    shape = dims(inp)
    wrong = Refusal("wrong layout", f"input `{inp.name}` has shape {fmt_shape(shape)}; InferQ "
                    "feeds one RGB image as [N,3,H,W] (nchw) or [N,H,W,3] (nhwc)")
    if len(shape) != 4:
        raise wrong
    first, last = shape[1] == 3, shape[3] == 3
    if first and last:  # [N,3,H,3]: trust the framework's convention
        first = fmt == "onnx"
        last = not first
    if not (first or last):
        raise wrong
    if shape[0] not in (None, 1):
        raise Refusal("wrong layout", f"input `{inp.name}` has a fixed batch of {shape[0]} "
                      f"(shape {fmt_shape(shape)}); InferQ feeds one image per run")
    layout = "nchw" if first else "nhwc"
    h, w = (shape[2], shape[3]) if first else (shape[1], shape[2])
    if size:
        if (w is not None and w != size[0]) or (h is not None and h != size[1]):
            raise Refusal("wrong size", f"--size {size[0]}x{size[1]} but input `{inp.name}` is "
                          f"{w}x{h} (shape {fmt_shape(shape)})")
        w, h = size
    if w is None or h is None:
        raise Refusal("dynamic size", f"input `{inp.name}` has shape {fmt_shape(shape)} with a "
                      "dynamic height or width; give --size WxH")
    return {"name": inp.name, "dtype": ONNX_DTYPES[elem], "layout": layout, "width": w,
            "height": h, "shape": shape}


def fmt_shape(shape):
    return "[" + ",".join("?" if d is None else str(d) for d in shape) + "]"


def sample_input(sig, mean, std):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (1, sig["height"], sig["width"], 3)).astype(np.float32)
    if sig["dtype"] == "float32":
        pixels = (pixels - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    x = pixels.astype(NP_DTYPES[sig["dtype"]])
    return x.transpose(0, 3, 1, 2).copy() if sig["layout"] == "nchw" else x


def run_onnx(path, x, name):
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    try:
        sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise Refusal("onnx runtime cannot load the model", one_line(e))
    names = [o.name for o in sess.get_outputs()]
    return names, sess.run(None, {name: x})


def compare(names, got, ref, tolerance):
    if callable(getattr(ref, "keys", None)):
        missing = [n for n in names if n not in ref]
        if missing:  # names differ: fall back to the order
            ref = list(ref.values())
        else:
            ref = [ref[n] for n in names]
    if len(ref) != len(got):
        raise Refusal("tolerance exceeded", f"the original has {len(ref)} outputs, the ONNX "
                      f"model {len(got)}")
    diff, scale = 0.0, 0.0
    for n, a, b in zip(names, ref, got):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        if a.shape != b.shape:
            raise Refusal("tolerance exceeded", f"output `{n}` has shape {list(b.shape)}, the "
                          f"original's is {list(a.shape)}")
        if not (np.isfinite(a).all() and np.isfinite(b).all()):
            raise Refusal("tolerance exceeded", f"output `{n}` is not finite on the sample")
        if a.size:
            diff = max(diff, float(np.abs(a - b).max()))
            scale = max(scale, float(np.abs(a).max()))
    scale = scale or 1.0
    limit = tolerance * scale
    return diff, scale, limit


def looks_like_probabilities(arr):
    a = np.asarray(arr, np.float64)
    return (a.ndim == 2 and a.size > 0 and bool((a >= 0).all() and (a <= 1).all())
            and bool(np.allclose(a.sum(axis=1), 1.0, atol=1e-3)))


def triple(text, flag):
    try:
        vals = [float(v) for v in text.split(",")]
    except ValueError:
        vals = []
    if len(vals) != 3:
        raise Refusal("usage", f"{flag} takes three numbers a,b,c")
    return vals


def run(args):
    times = {}
    t0 = time.perf_counter()
    fmt = detect_format(args.source)
    mean, std = triple(args.mean, "--mean"), triple(args.std, "--std")
    size = None
    if args.size:
        try:
            w, h = (int(v) for v in args.size.lower().split("x"))
            size = (w, h)
        except ValueError:
            raise Refusal("usage", "--size takes WxH, e.g. 224x224")
    work = tempfile.mkdtemp(prefix="inferq-import-")
    try:
        if fmt in TF_ONLY:
            tf = import_tf(fmt)
            times["import_tf"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        if fmt in ("keras", "h5", "tfjs_layers"):
            proto, original = load_keras(tf, args.source, fmt, args.opset)
        elif fmt == "savedmodel":
            proto, original = load_savedmodel(tf, args.source, args.opset)
        elif fmt == "tflite":
            proto, original = load_tflite(tf, args.source, args.opset)
        elif fmt == "tfjs_graph":
            proto, original = load_tfjs_graph(tf, args.source, args.opset, work)
        else:
            proto, original = load_onnx(args.source)
        times["convert"] = time.perf_counter() - t1
        bad = unsupported_ops(proto)
        if bad:
            raise Refusal("unsupported op", f"{', '.join(bad)} has no ONNX equivalent "
                          "(tf2onnx left it as a TensorFlow op)")
        import onnx
        try:
            onnx.checker.check_model(proto)
        except Exception as e:
            raise Refusal("invalid onnx", one_line(e))
        sig = input_signature(proto, fmt, size)
        tmp = os.path.join(work, "model.onnx")
        with open(tmp, "wb") as f:
            f.write(proto.SerializeToString())
        t2 = time.perf_counter()
        x = sample_input(sig, mean, std)
        names, got = run_onnx(tmp, x, sig["name"])
        check = {"tolerance": args.tolerance, "max_abs_diff": None, "output_scale": None,
                 "limit": None, "original": None}
        if original is not None:
            try:
                ref = original(x, names) if getattr(original, "wants_names", False) else original(x)
            except Exception as e:
                raise Failure(f"the original {fmt} model failed on the sample: {one_line(e)}")
            diff, scale, limit = compare(names, got, ref, args.tolerance)
            check.update(max_abs_diff=diff, output_scale=scale, limit=limit, original=fmt)
            if not diff <= limit:
                raise Refusal("tolerance exceeded", f"the ONNX model differs from the original "
                              f"by {diff:.3g} (max abs), more than the limit {limit:.3g} = "
                              f"tolerance {args.tolerance:g} x output scale {scale:.3g}")
        times["check"] = time.perf_counter() - t2
        shutil.move(tmp, args.out)
        outputs = [{"name": n, "shape": list(np.shape(g)),
                    "probabilities": looks_like_probabilities(g)} for n, g in zip(names, got)]
        times["total"] = time.perf_counter() - t0
        return {"format": fmt, "opset": max((o.version for o in proto.opset_import
                                             if o.domain in ("", "ai.onnx")), default=None),
                "input": sig, "outputs": outputs, "check": check,
                "seconds": {k: round(v, 3) for k, v in times.items()}}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", required=True)
    ap.add_argument("--out", required=True, help="where the ONNX file goes")
    ap.add_argument("--tolerance", type=float, default=1e-3)
    ap.add_argument("--mean", default="0,0,0")
    ap.add_argument("--std", default="1,1,1")
    ap.add_argument("--size", help="WxH for inputs with a dynamic height or width")
    ap.add_argument("--opset", type=int, default=OPSET)
    args = ap.parse_args()
    try:
        summary = run(args)
    except Refusal as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except Failure as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except Exception as e:  # noqa: BLE001 - one line for the user, exit 1
        print(f"error: import failed: {one_line(e)}", file=sys.stderr)
        sys.exit(1)
    sys.stdout.write(json.dumps(summary) + "\n")


if __name__ == "__main__":
    main()
