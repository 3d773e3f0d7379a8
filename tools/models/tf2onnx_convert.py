# Runs tf2onnx's converter (TF.js graph model or TFLite -> ONNX) with the fixes this TF/numpy combination needs.
"""Usage: tf2onnx_convert.py --source TEXT <arguments of `python -m tf2onnx.convert`>.
With --tfjs the model.json is first patched in place (see patch_tfjs): run it on an
extracted copy. TEXT (the registry package and path) replaces the doc string, which
tf2onnx fills with the local path it converted from."""
import runpy
import sys

import numpy as np
import onnx

import patch_tfjs

# tf2onnx 1.17 still calls np.product, which numpy 2 removed.
if not hasattr(np, 'product'):
    np.product = np.prod


def main():
    args = sys.argv[1:]
    source = args.pop(args.index('--source') + 1)
    args.remove('--source')
    output = args[args.index('--output') + 1]
    if '--tfjs' in args:
        patch_tfjs.patch(args[args.index('--tfjs') + 1])
    sys.argv = ['tf2onnx.convert'] + args
    try:
        runpy.run_module('tf2onnx.convert', run_name='__main__')
    except SystemExit as e:
        if e.code:
            raise
    model = onnx.load(output)
    model.doc_string = 'converted by tf2onnx from ' + source
    onnx.save(model, output)


if __name__ == '__main__':
    main()
