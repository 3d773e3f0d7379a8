# Turns tf2onnx's NanoDet graph into the shipped one: RGB input, named outputs in decoder order, static output shapes.
"""The human-models NanoDet (by its structure nanodet-g: CSP backbone, LeakyReLU, reg_max 10,
416x416) was trained on OpenCV's BGR frames with NanoDet's BGR mean (103.53, 116.28, 123.675)
and std (57.375, 57.12, 58.395). On the darknet pictures that normalisation gives detections
at least as good as any other tried; RGB / 255 (what human's JavaScript feeds it) scores
clearly lower. Swapping the input channels of the first convolution's weights makes the
model take RGB (mean/std then in RGB order) and compute the same function (up to float
summation order), so every shipped model has RGB input. tf2onnx names the six outputs
Identity..Identity_5 with unknown shapes; they are found by shape (H*W cells per stride;
80 class scores or 4*11 box bins) and renamed cls_<stride> / reg_<stride>.
Usage: nanodet_fixup.py IN.onnx OUT.onnx"""
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

SIZE = 416
CLASSES = 80
STRIDES = (8, 16, 32)


def output_shapes(path, input_name):
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    feed = {input_name: np.zeros((1, 3, SIZE, SIZE), np.float32)}
    return {meta.name: out.shape for meta, out in zip(session.get_outputs(), session.run(None, feed))}


def swap_first_conv_channels(graph):
    """Reverses the input-channel axis of the first convolution's weights (only Pad sits in between)."""
    source = graph.input[0].name
    pad = next(n for n in graph.node if source in n.input)
    assert pad.op_type == 'Pad', pad.op_type
    conv = next(n for n in graph.node if pad.output[0] in n.input)
    assert conv.op_type == 'Conv', conv.op_type
    weight_name = conv.input[1]
    assert sum(weight_name in n.input for n in graph.node) == 1, 'first conv weight is shared'
    init = next(i for i in graph.initializer if i.name == weight_name)
    w = numpy_helper.to_array(init)
    assert w.shape[1] == 3, w.shape
    init.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(w[:, ::-1]), weight_name))


def rename_outputs(graph, shapes):
    names = {}
    for name, shape in shapes.items():
        cells, width = shape[1], shape[2]
        stride = next(s for s in STRIDES if (SIZE // s) ** 2 == cells)
        names[name] = ('cls_%d' if width == CLASSES else 'reg_%d') % stride
    for node in graph.node:
        for i, out in enumerate(node.output):
            node.output[i] = names.get(out, out)
    ordered = []
    for stride in STRIDES:
        for kind in ('cls', 'reg'):
            new = '%s_%d' % (kind, stride)
            old = next(k for k, v in names.items() if v == new)
            ordered.append(onnx.helper.make_tensor_value_info(new, onnx.TensorProto.FLOAT, list(shapes[old])))
    del graph.output[:]
    graph.output.extend(ordered)


def main():
    src, dst = sys.argv[1], sys.argv[2]
    model = onnx.load(src)
    shapes = output_shapes(src, model.graph.input[0].name)
    swap_first_conv_channels(model.graph)
    rename_outputs(model.graph, shapes)
    onnx.checker.check_model(model)
    onnx.save(model, dst)


if __name__ == '__main__':
    main()
