# Checks the DeepLab ONNX file against TensorFlow running the package's whole TF.js graph, pre- and post-processing included.
"""cut_deeplab.py removes the original graph's padding, normalisation, upsampling and
argmax, so the ONNX file is only right together with the catalog's description of them.
This runs the uncut graph (model.json and shards turned back into a TF GraphDef) on each
picture, scaled to fit 513x513 as the package expects (the graph itself only pads), and
checks that
- verify.fit_and_pad with the catalog entry's mean, std, pad and pad_value gives the
  tensor the graph computes at `sub_7` (the ONNX input);
- the ONNX logits on that input match the graph's `logits/semantic/BiasAdd`;
- upsampling them as the graph does (bilinear, align_corners, to 513x513; its cell i on
  input pixel 8i) and taking the argmax over the picture's part gives the graph's
  `SemanticPredictions`.
Usage: deeplab_tf_check.py MODEL_DIR ONNX CATALOG_TOML PICTURE..."""
import json
import os
import sys
import tomllib

import numpy as np
import onnxruntime as ort
import tensorflow as tf
from google.protobuf import json_format
from PIL import Image

import verify

NAME = 'deeplabv3-mnv2-pascal'
DTYPES = {'float32': np.float32, 'int32': np.int32}


def load_graph(model_dir):
    """The TF.js graph model as a TF session (the weights put back into the Const nodes)."""
    with open(os.path.join(model_dir, 'model.json')) as f:
        model = json.load(f)
    graph_def = json_format.ParseDict(model['modelTopology'], tf.compat.v1.GraphDef(), ignore_unknown_fields=True)
    consts, offset = {}, 0
    for group in model['weightsManifest']:
        blob = b''.join(open(os.path.join(model_dir, p), 'rb').read() for p in group['paths'])
        offset = 0
        for w in group['weights']:
            dtype = np.dtype(DTYPES[w['dtype']])
            count = int(np.prod(w['shape'])) if w['shape'] else 1
            consts[w['name']] = np.frombuffer(blob, dtype, count, offset).reshape(w['shape'])
            offset += count * dtype.itemsize
        assert offset == len(blob), (offset, len(blob))
    for node in graph_def.node:
        if node.op == 'Const':
            node.attr['value'].tensor.CopyFrom(tf.make_tensor_proto(consts[node.name]))
    graph = tf.Graph()
    with graph.as_default():
        tf.import_graph_def(graph_def, name='')
    return tf.compat.v1.Session(graph=graph)


def main():
    model_dir, onnx_path, catalog_path, *pictures = sys.argv[1:]
    with open(catalog_path, 'rb') as f:
        entry = next(e for e in tomllib.load(f)['model'] if e['name'] == NAME)
    session = load_graph(model_dir)
    onnx_session = ort.InferenceSession(onnx_path, providers=['CPUExecutionProvider'])
    side = entry['input_shape'][1]
    worst_input, worst_logits, worst_agreement = 0.0, 0.0, 1.0
    for path in pictures:
        image = Image.open(path).convert('RGB')
        x, (w, h) = verify.fit_and_pad(image, entry)
        scaled = np.asarray(image.resize((w, h), Image.BILINEAR), np.uint8)[None]
        predictions, tf_input, tf_logits = session.run(
            ['SemanticPredictions:0', 'sub_7:0', 'logits/semantic/BiasAdd:0'], {'ImageTensor:0': scaled})
        input_diff = float(np.abs(tf_input - x).max())
        (logits,) = onnx_session.run(None, {entry['input']: x})
        logits_diff = float(np.abs(logits - tf_logits).max() / np.abs(tf_logits).max())
        stride = (side - 1) / (logits.shape[1] - 1)
        classes = verify.bilinear(logits[0], np.arange(h) / stride, np.arange(w) / stride).argmax(-1)
        agreement = float((classes == predictions[0]).mean())
        print('%s: scaled to %dx%d, input max abs diff %.2g, logits max rel diff %.2g, '
              'argmax agreement %.6f (%d of %d pixels differ)'
              % (os.path.basename(path), w, h, input_diff, logits_diff, agreement,
                 int((classes != predictions[0]).sum()), classes.size))
        worst_input = max(worst_input, input_diff)
        worst_logits = max(worst_logits, logits_diff)
        worst_agreement = min(worst_agreement, agreement)
    print('worst: input %.2g, logits %.2g, argmax agreement %.6f' % (worst_input, worst_logits, worst_agreement))
    if worst_input > 1e-5 or worst_logits > 1e-4 or worst_agreement < 0.999:
        sys.exit('the ONNX file with the catalog\'s pre- and post-processing differs from the original graph')


if __name__ == '__main__':
    main()
