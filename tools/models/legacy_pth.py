# Reads a PyTorch state dict saved in the legacy (pre-1.6, non-zip) pickle format into numpy arrays, without torch.
"""The legacy format is: magic, protocol version and system info pickles, then the
state-dict pickle whose tensors point at storages by key, then the list of storage
keys, then each storage's raw little-endian data prefixed by its element count."""
import collections
import pickle
import struct

import numpy as np

STORAGE_DTYPES = {
    'FloatStorage': np.float32, 'DoubleStorage': np.float64, 'HalfStorage': np.float16,
    'LongStorage': np.int64, 'IntStorage': np.int32, 'ByteStorage': np.uint8,
}


class _Storage:
    def __init__(self, kind, key):
        self.kind, self.key = kind, key


class _Tensor:
    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)


def _rebuild_tensor_v2(storage, offset, size, stride, *_):
    return _Tensor(storage, offset, size, stride)


class _Unpickler(pickle.Unpickler):
    """Resolves torch's classes to the stubs above so that unpickling never imports torch."""

    def __init__(self, f, storages):
        super().__init__(f)
        self.storages = storages

    def find_class(self, module, name):
        if name == '_rebuild_tensor_v2':
            return _rebuild_tensor_v2
        if name in STORAGE_DTYPES:
            return name
        if module == 'collections' and name == 'OrderedDict':
            return collections.OrderedDict
        raise pickle.UnpicklingError('unexpected class %s.%s in checkpoint' % (module, name))

    def persistent_load(self, pid):
        _typename, kind, key, _location, _size, _view = pid
        return self.storages.setdefault(key, _Storage(kind, key))


def load(path):
    """Returns an OrderedDict name -> numpy array."""
    storages = {}
    with open(path, 'rb') as f:
        for _ in range(3):  # magic number, protocol version, system info
            pickle.load(f)
        tensors = _Unpickler(f, storages).load()
        keys = pickle.load(f)
        data = {}
        for key in keys:
            dtype = np.dtype(STORAGE_DTYPES[storages[key].kind])
            count, = struct.unpack('<q', f.read(8))
            data[key] = np.frombuffer(f.read(count * dtype.itemsize), dtype=dtype)
    out = collections.OrderedDict()
    for name, t in tensors.items():
        flat = data[t.storage.key]
        if not t.size:
            out[name] = flat[t.offset:t.offset + 1].reshape(()).copy()
            continue
        strides = [s * flat.dtype.itemsize for s in t.stride]
        out[name] = np.lib.stride_tricks.as_strided(flat[t.offset:], shape=t.size, strides=strides).copy()
    return out
