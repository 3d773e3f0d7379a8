# Tiny ONNX files with jetson-inference's custom-model signatures, for visiond's unit tests.
"""Usage: jetson_fixtures.py [OUT_DIR]   (default: tests/data)

Writes two small models whose outputs are simple, known functions of the input, so the tests
can check visiond's conventions for custom ONNX files end to end (tensor names, input size,
normalisation, output decoding):

jetson-classifier.onnx   imageNet convention: input_0 [1,3,224,224] -> output_0 [1,3];
                         the logits are the mean of each (normalised) input channel.
jetson-ssd.onnx          pytorch-ssd (SSD-Mobilenet) convention: input_0 [1,3,300,300] ->
                         scores [1,2,3] (softmax over BACKGROUND + 2 classes) and boxes
                         [1,2,4] (x1,y1,x2,y2 normalised). Prior 0 is class 1 with logits
                         (0, 4, 0) at (0.1,0.2,0.5,0.6); prior 1 is class 2 with logits
                         (0, 0, 4m) at (0.5,0.5,0.9,1.0), where m is the mean of the
                         normalised input: a white frame (m = 1) shows it, a black one not.
Needs the `onnx` package (pinned in requirements.txt)."""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 13


def save(graph, path):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', OPSET)],
                              producer_name='visiond jetson_fixtures.py')
    model.ir_version = 7
    onnx.checker.check_model(model)
    onnx.save(model, path)
    print('wrote', path)


def picture_input(size):
    return helper.make_tensor_value_info('input_0', TensorProto.FLOAT, [1, 3, size, size])


def classifier():
    nodes = [
        helper.make_node('ReduceMean', ['input_0'], ['output_0'], axes=[2, 3], keepdims=0),
    ]
    output = helper.make_tensor_value_info('output_0', TensorProto.FLOAT, [1, 3])
    return helper.make_graph(nodes, 'jetson-classifier', [picture_input(224)], [output])


def ssd():
    score_weight = np.zeros((1, 2, 3), np.float32)
    score_weight[0, 1, 2] = 4.0
    score_bias = np.zeros((1, 2, 3), np.float32)
    score_bias[0, 0, 1] = 4.0
    boxes = np.array([[[0.1, 0.2, 0.5, 0.6], [0.5, 0.5, 0.9, 1.0]]], np.float32)
    constants = [numpy_helper.from_array(a, name) for a, name in
                 ((score_weight, 'score_weight'), (score_bias, 'score_bias'),
                  (boxes, 'prior_boxes'), (np.zeros(1, np.float32), 'zero'))]
    nodes = [
        # keepdims=0: m has shape [1] and broadcasts against the [1,2,3] scores.
        helper.make_node('ReduceMean', ['input_0'], ['m'], axes=[1, 2, 3], keepdims=0),
        helper.make_node('Mul', ['m', 'score_weight'], ['weighted']),
        helper.make_node('Add', ['weighted', 'score_bias'], ['logits']),
        helper.make_node('Softmax', ['logits'], ['scores'], axis=2),
        # Boxes depend on the input only formally (times 0), so both outputs stay live.
        helper.make_node('Mul', ['m', 'zero'], ['nothing']),
        helper.make_node('Add', ['nothing', 'prior_boxes'], ['boxes']),
    ]
    outputs = [helper.make_tensor_value_info('scores', TensorProto.FLOAT, [1, 2, 3]),
               helper.make_tensor_value_info('boxes', TensorProto.FLOAT, [1, 2, 4])]
    return helper.make_graph(nodes, 'jetson-ssd', [picture_input(300)], outputs, constants)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, '..', '..', 'tests', 'data')
    save(classifier(), os.path.join(out, 'jetson-classifier.onnx'))
    save(ssd(), os.path.join(out, 'jetson-ssd.onnx'))


if __name__ == '__main__':
    main()
