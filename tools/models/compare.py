# Tells whether two ONNX files compute the same outputs (tf2onnx output differs in bytes, not in maths, between runs).
"""Usage: compare.py A.onnx B.onnx — exit status 0 when both have the same inputs and
outputs (names, types, shapes) and give the same outputs, within a relative tolerance, in
onnxruntime on seeded random inputs."""
import sys

import numpy as np
import onnx
import onnxruntime as ort

# A symbolic input dimension (I3D's time axis) gets this size.
SYMBOLIC_DIM = 16
RTOL = 1e-4


def signature(path):
    """[(name, elem_type, dims)] of the graph inputs (initializers excluded) and outputs."""
    graph = onnx.load(path, load_external_data=False).graph
    inits = {i.name for i in graph.initializer}

    def describe(v):
        t = v.type.tensor_type
        dims = [d.dim_value if d.HasField('dim_value') else (d.dim_param or '?') for d in t.shape.dim]
        return v.name, t.elem_type, dims

    return ([describe(v) for v in graph.input if v.name not in inits],
            [describe(v) for v in graph.output])


def random_feeds(path, seed=0):
    """Inputs in each model's working range: floats in [0, 1), integers in [0, 255]."""
    rng = np.random.RandomState(seed)
    feeds = {}
    for name, elem_type, dims in signature(path)[0]:
        shape = [d if isinstance(d, int) and d > 0 else SYMBOLIC_DIM for d in dims]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(elem_type)
        if np.issubdtype(dtype, np.integer):
            feeds[name] = rng.randint(0, 256, size=shape).astype(dtype)
        else:
            feeds[name] = rng.rand(*shape).astype(dtype)
    return feeds


def run_ort(path, feeds):
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    return session.run(None, feeds)


def max_rel_diff(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(1.0, float(np.max(np.abs(a)))))


def main():
    a, b = sys.argv[1], sys.argv[2]
    if signature(a) != signature(b):
        print('%s: inputs/outputs differ:\n  %s\n  %s' % (b, signature(a), signature(b)))
        return 1
    feeds = random_feeds(a)
    diffs = [max_rel_diff(x, y) for x, y in zip(run_ort(a, feeds), run_ort(b, feeds))]
    worst = max(diffs)
    print('%s: max relative difference %.2g' % (b, worst))
    return 0 if worst <= RTOL else 1


if __name__ == '__main__':
    sys.exit(main())
