# Cuts the MAX Image Segmenter TF.js graph (DeepLabv3 MobileNetV2, PASCAL VOC) down to its network: normalised 513x513 in, logits out.
"""The package's graph (IBM MAX Image Segmenter, the TF DeepLab zoo's
deeplabv3_mnv2_pascal_trainval frozen graph) takes a uint8 picture whose sides are at most
513, pads it to 513x513 itself (value 127.5, on the bottom and right: the picture stays at
the top-left corner), normalises it, runs the network, upsamples the 65x65 logits
(bilinear, align_corners) to 513x513, crops the picture's part and returns the argmax
(`SemanticPredictions`). Its padding and resizing depend on the input's shape, which
tf2onnx cannot give a fixed-size graph for, and the argmax throws the scores away. So the
graph is cut: the node `sub_7` (the normalised, padded tensor, x/127.5 - 1, that the first
convolution takes) becomes a Placeholder `input` f32 [1,513,513,3], and the graph ends at
`logits/semantic/BiasAdd` ([1,65,65,21], output stride 8); nodes that only served the
cut-off parts are dropped. The caller redoes the padding and post-processing (see the
catalog's notes). The weights manifest and shards are copied unchanged (tf2onnx ignores
the weights of dropped Const nodes).
Usage: cut_deeplab.py MODEL_DIR OUT_DIR"""
import json
import os
import shutil
import sys

CUT = 'sub_7'
OUTPUT = 'logits/semantic/BiasAdd'
SIZE = 513

PLACEHOLDER = {'name': 'input', 'op': 'Placeholder', 'attr': {
    'dtype': {'type': 'DT_FLOAT'},
    'shape': {'shape': {'dim': [{'size': '1'}, {'size': str(SIZE)}, {'size': str(SIZE)}, {'size': '3'}]}}}}


def source(name):
    """Node name of an input reference ('^ctrl', 'node:1')."""
    return name.lstrip('^').split(':')[0]


def cut(nodes):
    """The nodes OUTPUT needs when CUT is an input, CUT replaced by the placeholder."""
    by_name = {n['name']: n for n in nodes}
    keep, stack = set(), [OUTPUT]
    while stack:
        name = stack.pop()
        if name in keep:
            continue
        keep.add(name)
        if name != CUT:
            stack += [source(i) for i in by_name[name].get('input', [])]
    assert CUT in keep, 'the graph does not reach %s' % CUT
    kept = []
    for node in nodes:
        if node['name'] == CUT:
            kept.append(PLACEHOLDER)
        elif node['name'] in keep:
            node = dict(node)
            node['input'] = ['input' if i == CUT else i for i in node.get('input', [])]
            kept.append(node)
    return kept


def main():
    src, dst = sys.argv[1:3]
    os.makedirs(dst, exist_ok=True)
    with open(os.path.join(src, 'model.json')) as f:
        model = json.load(f)
    nodes = model['modelTopology']['node']
    model['modelTopology']['node'] = cut(nodes)
    with open(os.path.join(dst, 'model.json'), 'w') as f:
        json.dump(model, f)
    for group in model['weightsManifest']:
        for path in group['paths']:
            shutil.copy(os.path.join(src, path), dst)
    print('kept %d of %d nodes' % (len(model['modelTopology']['node']), len(nodes)))


if __name__ == '__main__':
    main()
