# Fills in the sha256 values of DIR/catalog.toml and checks each entry against its ONNX file.
"""Usage: catalog.py DIR. Fails (and writes nothing) when an entry's input name, shape,
dtype or output names disagree with the ONNX file, a file it names is missing, or its fit
keys are not ones visiond knows. Only the
sha256 lines are rewritten, so the comments and layout of the catalog stay as written."""
import hashlib
import os
import re
import sys
import tomllib

import onnx

import compare

DTYPES = {'f32': onnx.TensorProto.FLOAT, 'i32': onnx.TensorProto.INT32}
# Where the filling goes when the picture is fitted into the input, keeping its aspect.
FITS = ('stretch', 'letterbox', 'pad-bottom-right', 'centre-crop')


def sha256(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()


def problems(directory, entry):
    """What is wrong with one catalog entry, as a list of sentences."""
    found = []
    for key in ('labels', 'license_file', 'notice_file'):
        if entry[key] and not os.path.isfile(os.path.join(directory, entry[key])):
            found.append('%s %s is missing' % (key, entry[key]))
    if entry.get('fit', 'stretch') not in FITS:
        found.append('fit is %r, not one of %s' % (entry['fit'], ', '.join(FITS)))
    pad_value = entry.get('pad_value', 0)
    if not isinstance(pad_value, (int, float)) or not 0 <= pad_value <= 255:
        found.append('pad_value %r is not a pixel value 0..255' % (pad_value,))
    inputs, outputs = compare.signature(os.path.join(directory, entry['file']))
    if len(inputs) != 1:
        return found + ['has %d inputs, the catalog describes one' % len(inputs)]
    name, elem_type, dims = inputs[0]
    if name != entry['input']:
        found.append('input is %r, not %r' % (name, entry['input']))
    if elem_type != DTYPES[entry['dtype']]:
        found.append('input type is %s, not %s' % (onnx.TensorProto.DataType.Name(elem_type), entry['dtype']))
    # A symbolic dimension (I3D's time axis) accepts the catalog's size.
    if len(dims) != len(entry['input_shape']) or any(
            isinstance(d, int) and d != c for d, c in zip(dims, entry['input_shape'])):
        found.append('input shape is %s, not %s' % (dims, entry['input_shape']))
    if sorted(o[0] for o in outputs) != sorted(entry['outputs']):
        found.append('outputs are %s, not %s' % ([o[0] for o in outputs], entry['outputs']))
    return found


def main():
    directory = sys.argv[1]
    path = os.path.join(directory, 'catalog.toml')
    with open(path, 'rb') as f:
        entries = tomllib.load(f)['model']
    errors = ['%s: %s' % (e['name'], p) for e in entries for p in problems(directory, e)]
    if errors:
        sys.exit('catalog.toml disagrees with the models:\n  ' + '\n  '.join(errors))
    hashes = {e['file']: sha256(os.path.join(directory, e['file'])) for e in entries}
    with open(path) as f:
        blocks = re.split(r'(?m)^(?=\[\[model\]\])', f.read())
    for i, block in enumerate(blocks):
        file = re.search(r'(?m)^file = "([^"]+)"', block)
        if file:
            blocks[i] = re.sub(r'(?m)^sha256 = "[^"]*"', 'sha256 = "%s"' % hashes[file.group(1)], block)
    with open(path, 'w') as f:
        f.write(''.join(blocks))


if __name__ == '__main__':
    main()
