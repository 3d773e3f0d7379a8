# Adds the node attributes that TF 2.21 requires but TF.js model.json files omit, so tf2onnx can import them.
"""Fused ops (_FusedConv2D, FusedDepthwiseConv2dNative, _FusedMatMul) need TArgs and TopKV2
needs index_type/Tk; the TF.js converter dropped both. Patching is idempotent."""
import json

FUSED_OPS = ('_FusedConv2D', 'FusedDepthwiseConv2dNative', '_FusedMatMul')


def patch(path):
    with open(path) as f:
        model = json.load(f)
    topology = model['modelTopology']
    nodes = list(topology['node'])
    for function in topology.get('library', {}).get('function', []):
        nodes += function.get('nodeDef', [])
    for node in nodes:
        attr = node.setdefault('attr', {})
        if node['op'] in FUSED_OPS and 'TArgs' not in attr:
            dtype = attr.get('T', {}).get('type', 'DT_FLOAT')
            attr['TArgs'] = {'list': {'type': [dtype] * int(attr.get('num_args', {}).get('i', '1'))}}
        if node['op'] == 'TopKV2':
            attr.setdefault('index_type', {'type': 'DT_INT32'})
            attr.setdefault('Tk', {'type': 'DT_INT32'})
    with open(path, 'w') as f:
        json.dump(model, f)
