"""Small helpers shared by the model scripts of the tf2onnx venv (.cache/tf-venv):
convert_esrgan.py, train_heatmap.py and convert_movenet.py.

Why a module: the first two export a Keras model through tf2onnx and rename the generated tensor
and dimension names to the ones their manifests use; all three check the result with
onnxruntime on one thread and time it. Keeping that in one place keeps the scripts about their
models.
"""
import os
import time

import numpy as np


def export_keras(model, out, input_name, output_name, dims, opset=13):
    """Export a Keras model with a fully dynamic NHWC float32 input to ONNX at `out`.

    dims: names for the input's (batch, height, width) and the output's (batch, height, width)
    dimensions, e.g. (("batch", "height", "width"), ("batch", "out_height", "out_width")).
    tf2onnx 1.17 calls np.product (gone in numpy 2): aliased here.
    """
    import onnx
    import tensorflow as tf
    if not hasattr(np, "product"):
        np.product = np.prod
    import tf2onnx

    fn = tf.function(lambda x: model(x, training=False))
    spec = (tf.TensorSpec([None, None, None, 3], tf.float32, name=input_name),)
    proto, _ = tf2onnx.convert.from_function(fn, input_signature=spec, opset=opset)
    (out_old,) = [o.name for o in proto.graph.output]
    for node in proto.graph.node:
        node.output[:] = [output_name if n == out_old else n for n in node.output]
    proto.graph.output[0].name = output_name
    for value, names in ((proto.graph.input[0], dims[0]), (proto.graph.output[0], dims[1])):
        shape = value.type.tensor_type.shape.dim
        for d, name in zip(shape[:3], names):
            if not d.HasField("dim_value"):
                d.dim_param = name
    onnx.checker.check_model(proto)
    onnx.save(proto, out + ".tmp")
    os.replace(out + ".tmp", out)
    return proto


def session(path, threads=1, log_level=3):
    """An onnxruntime CPU session with `threads` intra-op threads (InferQ runs one per core);
    log_level 4 silences even errors (for a run that is expected to fail)."""
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = log_level
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def median_ms(run, n=5):
    """Median wall time of run() in ms, after one warm-up call."""
    run()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1000


def psnr(a, b, peak=255.0):
    mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(peak * peak / mse)


def _gauss_blur(x, sigma=1.5, radius=5):
    k = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    k /= k.sum()
    x = np.apply_along_axis(lambda r: np.convolve(r, k, mode="valid"), 0, x)
    return np.apply_along_axis(lambda r: np.convolve(r, k, mode="valid"), 1, x)


def luma(rgb):
    """ITU-R BT.601 luma (0..255) of an RGB array, as SR papers measure."""
    rgb = np.asarray(rgb, np.float64)
    return 16 + (65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]) / 255


def ssim(a, b, peak=255.0):
    """SSIM (Wang et al. 2004: Gaussian window 11x11, sigma 1.5, K1 0.01, K2 0.03) of two
    single-channel images, mean over the valid window positions."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    mu_a, mu_b = _gauss_blur(a), _gauss_blur(b)
    va = _gauss_blur(a * a) - mu_a ** 2
    vb = _gauss_blur(b * b) - mu_b ** 2
    cov = _gauss_blur(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (va + vb + c2))
    return float(s.mean())
