# Reference checks of the shipped models: onnxruntime vs tract, and decoded outputs on the darknet test pictures.
"""Usage: verify.py [--models DIR] [--data DIR] [--json FILE]

For every model in DIR/catalog.toml: the sha256 matches, onnxruntime and tract (fixed input
shapes) agree on seeded random inputs and on a real picture, and the decoded outputs on the
test pictures are sensible (asserted loosely, printed in full). The decoders here are the
reference that visiond's Rust decoders are compared with; --json writes their results.

Preprocessing: the whole picture is stretched to the model's input size with PIL's
bilinear filter (a triangle filter widened when shrinking), then (pixel - mean) / std in
the catalog's channel order. A model whose `fit` is letterbox or
pad-bottom-right (DeepLab) instead gets the picture scaled with the same filter, keeping
its aspect ratio, to fit the input, centred or at the top-left corner, and the rest filled
with `pad_value` (see placement).
Reported coordinates are in pixels of the original picture."""
import argparse
import json
import os
import sys
import time
import tomllib

import numpy as np
import onnxruntime as ort
import tract
from PIL import Image

import catalog
import compare

# tract vs onnxruntime, relative to the largest output value.
TRACT_RTOL = 1e-3


class Failure(Exception):
    pass


def expect(condition, message):
    if not condition:
        raise Failure(message)


def picture(data_dir, name):
    return Image.open(os.path.join(data_dir, name + '.jpg')).convert('RGB')


def preprocess(image, entry):
    """PIL image -> model input for a catalog entry, batch 1; for ncthw, a clip that
    repeats the picture in every frame."""
    shape, layout = entry['input_shape'], entry['layout']
    h, w = input_size(entry)
    if entry.get('fit', 'stretch') == 'stretch':
        x = np.asarray(image.resize((w, h), Image.BILINEAR), np.float32)
    else:
        (pw, ph), (left, top) = placement(image, entry)
        x = np.full((h, w, 3), entry.get('pad_value', 0), np.float32)
        x[top:top + ph, left:left + pw] = np.asarray(image.resize((pw, ph), Image.BILINEAR), np.float32)
    if entry['dtype'] == 'i32':
        return x.astype(np.int32)[None]
    x = (x - np.array(entry['mean'], np.float32)) / np.array(entry['std'], np.float32)
    if layout == 'nchw':
        x = x.transpose(2, 0, 1)
    elif layout == 'ncthw':
        x = np.repeat(x.transpose(2, 0, 1)[:, None], shape[2], axis=1)
    return np.ascontiguousarray(x[None])


def input_size(entry):
    """(height, width) of a picture model's input."""
    shape = entry['input_shape']
    return {'nchw': shape[2:4], 'nhwc': shape[1:3], 'ncthw': shape[3:5]}[entry['layout']]


def placement(image, entry):
    """Where the picture goes in the input, for the entry's fit: ((w, h) it is scaled to,
    (left, top) of its corner). Aspect kept, the longer side fills the input, the other
    rounded; letterbox centres it, pad-bottom-right puts it at the top-left corner."""
    fit = entry.get('fit', 'stretch')
    ih, iw = input_size(entry)
    if fit == 'stretch':
        return (iw, ih), (0, 0)
    expect(fit in ('letterbox', 'pad-bottom-right'), 'fit %r is not supported here' % fit)
    scale = min(iw / image.width, ih / image.height)
    w, h = max(1, round(image.width * scale)), max(1, round(image.height * scale))
    if fit == 'letterbox':
        return (w, h), ((iw - w) // 2, (ih - h) // 2)
    return (w, h), (0, 0)


def fit_and_pad(image, entry):
    """PIL image -> model input for an entry with fit = "pad-bottom-right", and the size
    (w, h) the picture was scaled to."""
    expect(entry.get('fit') == 'pad-bottom-right', 'fit_and_pad: fit is %r' % entry.get('fit'))
    return preprocess(image, entry), placement(image, entry)[0]


def bilinear(grid, ys, xs):
    """grid [H,W,C] sampled at the fractional cell coordinates ys (rows) x xs (columns),
    each clamped to the grid; separable bilinear interpolation -> [len(ys),len(xs),C]."""
    def weights(coords, n):
        coords = np.clip(np.asarray(coords, np.float64), 0, n - 1)
        low = np.minimum(np.floor(coords).astype(int), n - 1)
        return low, np.minimum(low + 1, n - 1), (coords - low)[:, None, None].astype(np.float32)

    y0, y1, wy = weights(ys, grid.shape[0])
    rows = grid[y0] * (1 - wy) + grid[y1] * wy
    x0, x1, wx = weights(xs, grid.shape[1])
    rows = rows.transpose(1, 0, 2)
    return (rows[x0] * (1 - wx) + rows[x1] * wx).transpose(1, 0, 2)


def deeplab_classes(logits, entry, scaled, image_size):
    """DeepLab logits [1,g,g,C] -> class index per pixel of the original picture [H,W].
    Cell i lies on input pixel i*stride, stride = (side-1)/(g-1) = 8 (the original graph
    upsamples with align_corners); a picture pixel's centre lies on input pixel
    (x + 0.5) * w'/W - 0.5, w' the width it was scaled to. Bilinear, then argmax."""
    side, cells = entry['input_shape'][1], logits.shape[1]
    stride = (side - 1) / (cells - 1)
    (w, h), (width, height) = scaled, image_size
    ys = ((np.arange(height) + 0.5) * h / height - 0.5) / stride
    xs = ((np.arange(width) + 0.5) * w / width - 0.5) / stride
    # Clamp to the picture's part of the input: the padding is not the picture.
    ys, xs = np.clip(ys, 0, (h - 1) / stride), np.clip(xs, 0, (w - 1) / stride)
    return bilinear(logits[0], ys, xs).argmax(-1)


def softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def nms(boxes, scores, iou_threshold):
    """Greedy NMS over (x1, y1, x2, y2) boxes; returns the kept indices, best first."""
    order = list(np.argsort(-scores))
    keep = []
    while order:
        i = order.pop(0)
        keep.append(i)
        rest = []
        for j in order:
            ix = max(0.0, min(boxes[i][2], boxes[j][2]) - max(boxes[i][0], boxes[j][0]))
            iy = max(0.0, min(boxes[i][3], boxes[j][3]) - max(boxes[i][1], boxes[j][1]))
            inter = ix * iy
            union = ((boxes[i][2] - boxes[i][0]) * (boxes[i][3] - boxes[i][1])
                     + (boxes[j][2] - boxes[j][0]) * (boxes[j][3] - boxes[j][1]) - inter)
            if union <= 0 or inter / union <= iou_threshold:
                rest.append(j)
        order = rest
    return keep


class Models:
    """Catalog entries, their sessions and labels."""

    def __init__(self, directory):
        self.dir = directory
        with open(os.path.join(directory, 'catalog.toml'), 'rb') as f:
            self.entries = {e['name']: e for e in tomllib.load(f)['model']}
        self.sessions = {}

    def path(self, name):
        return os.path.join(self.dir, self.entries[name]['file'])

    def labels(self, name):
        with open(os.path.join(self.dir, self.entries[name]['labels'])) as f:
            return f.read().splitlines()

    def run(self, name, x):
        """onnxruntime; outputs by name."""
        if name not in self.sessions:
            self.sessions[name] = ort.InferenceSession(self.path(name), providers=['CPUExecutionProvider'])
        session = self.sessions[name]
        outs = session.run(None, {self.entries[name]['input']: x})
        return {meta.name: out for meta, out in zip(session.get_outputs(), outs)}


def tract_model(path, x):
    """tract, optimised for the fixed shape and type of x."""
    model = tract.onnx().load(path)
    model.set_input_fact(0, ','.join(map(str, x.shape)) + ',' + ('i32' if x.dtype == np.int32 else 'f32'))
    return model.into_model().into_runnable()


def check_runtimes(models, name, real_input):
    """tract agrees with onnxruntime on a random and on a real input; returns timings."""
    entry = models.entries[name]
    path = models.path(name)
    expect(catalog.sha256(path) == entry['sha256'], 'sha256 differs from catalog.toml')
    problems = catalog.problems(models.dir, entry)
    expect(not problems, '; '.join(problems))
    random_input = next(iter(compare.random_feeds(path).values()))
    t0 = time.time()
    runnable = tract_model(path, random_input)
    t1 = time.time()
    result = {'tract_load_s': round(t1 - t0, 2)}
    for kind, x in (('random', random_input), ('picture', real_input)):
        ref = models.run(name, x)
        t2 = time.time()
        got = [t.to_numpy() for t in runnable.run([x])]
        result['tract_run_s'] = round(time.time() - t2, 3)
        for out_name, value in zip(ref, got):
            expect(value.shape == ref[out_name].shape, '%s: tract shape %s, onnxruntime %s'
                   % (out_name, value.shape, ref[out_name].shape))
            diff = compare.max_rel_diff(ref[out_name], value)
            expect(diff <= TRACT_RTOL, '%s on %s input: tract differs from onnxruntime by %.2g'
                   % (out_name, kind, diff))
            result['tract_diff_' + kind] = max(result.get('tract_diff_' + kind, 0.0), diff)
    return result


def classify(models, data_dir):
    name = 'efficientnet-lite0'
    labels = models.labels(name)
    result = {}
    for pic in ('eagle', 'dog', 'giraffe', 'horses', 'person'):
        probs = softmax(models.run(name, preprocess(picture(data_dir, pic), models.entries[name]))['logits'][0])
        top = np.argsort(-probs)[:5]
        result[pic] = [[int(i), labels[i], round(float(probs[i]), 4)] for i in top]
    expect(result['eagle'][0][1] == 'bald eagle', 'eagle.jpg top-1 is %s' % result['eagle'][0][1])
    expect(any('Shepherd' in r[1] for r in result['dog']), 'no shepherd in the dog.jpg top-5')
    return result


def nanodet_decode(outs, entry, image, score_threshold=0.3, iou_threshold=0.6):
    """NanoDet GFL decode (distribution focal loss boxes); boxes in original picture pixels."""
    size = entry['input_shape'][2]
    bins = np.arange(entry['reg_max'] + 1, dtype=np.float32)
    boxes, scores, classes = [], [], []
    for stride in entry['strides']:
        cls = outs['cls_%d' % stride][0]
        reg = outs['reg_%d' % stride][0].reshape(-1, 4, entry['reg_max'] + 1)
        grid = size // stride
        cells, labels = np.nonzero(cls > score_threshold)
        for cell, label in zip(cells, labels):
            cx, cy = (cell % grid + 0.5) * stride, (cell // grid + 0.5) * stride
            left, top, right, bottom = softmax(reg[cell]) @ bins * stride
            boxes.append((cx - left, cy - top, cx + right, cy + bottom))
            scores.append(cls[cell, label])
            classes.append(label)
    (w, h), (left, top) = placement(image, entry)
    sx, sy = image.width / w, image.height / h
    found = []
    # Across classes, as visiond does: one box for one thing.
    for k in nms(boxes, np.array(scores), iou_threshold):
        x1, y1, x2, y2 = boxes[k]
        found.append((float(scores[k]), int(classes[k]),
                      [(x1 - left) * sx, (y1 - top) * sy, (x2 - left) * sx, (y2 - top) * sy]))
    return sorted(found, key=lambda f: -f[0])


def detect(models, data_dir):
    name = 'nanodet'
    entry = models.entries[name]
    labels = models.labels(name)
    result = {}
    for pic in ('dog', 'horses', 'person', 'giraffe', 'eagle'):
        image = picture(data_dir, pic)
        dets = nanodet_decode(models.run(name, preprocess(image, entry)), entry, image)
        result[pic] = [[labels[c], round(s, 3), [round(v, 1) for v in box]] for s, c, box in dets]
    found = {d[0] for d in result['dog']}
    expect({'dog', 'bicycle'} <= found and found & {'car', 'truck'}, 'dog.jpg detections: %s' % sorted(found))
    dog = next(d[2] for d in result['dog'] if d[0] == 'dog')
    expect(dog[0] < 200 and dog[1] > 150 and dog[2] < 420 and dog[3] > 450, 'dog box %s' % dog)
    return result


def movenet(models, data_dir):
    result = {}
    image = picture(data_dir, 'person')
    w, h = image.size
    names = models.labels('movenet-lightning')
    for name in ('movenet-lightning', 'movenet-thunder'):
        kp = models.run(name, preprocess(image, models.entries[name]))['Identity:0'][0, 0]
        result[name] = [[names[i], round(float(y * h), 1), round(float(x * w), 1), round(float(s), 3)]
                        for i, (y, x, s) in enumerate(kp)]
        expect(kp.shape == (17, 3), 'keypoints shape %s' % (kp.shape,))
        expect(float(np.mean(kp[:, 2])) > 0.3, '%s: mean keypoint score %.2f' % (name, np.mean(kp[:, 2])))
        # The person stands in the right part of person.jpg (x between ~180 and ~300 of 640).
        xs = kp[kp[:, 2] > 0.3, 1] * w
        expect(xs.size >= 10 and xs.min() > 150 and xs.max() < 330, '%s: keypoint x %s' % (name, xs))
    people = models.run('movenet-multipose', preprocess(image, models.entries['movenet-multipose']))['output_0'][0]
    result['movenet-multipose'] = [
        {'score': round(float(p[55]), 3),
         'box_yxyx': [round(float(p[51] * h), 1), round(float(p[52] * w), 1),
                      round(float(p[53] * h), 1), round(float(p[54] * w), 1)]}
        for p in people if p[55] > 0.2]
    expect(len(result['movenet-multipose']) >= 1, 'multipose found nobody')
    return result


def selfie(models, data_dir):
    name = 'selfie-segmentation'
    image = picture(data_dir, 'person')
    mask = models.run(name, preprocess(image, models.entries[name]))['activation_10:0'][0, :, :, 0] > 0.5
    # The person's box in person.jpg (640x424), in mask cells.
    sx, sy = mask.shape[1] / image.size[0], mask.shape[0] / image.size[1]
    box = mask[round(95 * sy):round(385 * sy), round(180 * sx):round(290 * sx)]
    result = {'person_fraction': round(float(mask.mean()), 4),
              'share_inside_person_box': round(float(box.sum() / max(1, mask.sum())), 4),
              'person_box_covered': round(float(box.mean()), 4)}
    expect(0.02 < result['person_fraction'] < 0.2 and result['share_inside_person_box'] > 0.9
           and result['person_box_covered'] > 0.3, 'person.jpg mask %s' % result)
    return {'person': result}


def deeplab(models, data_dir):
    """Per picture, the classes covering at least 0.1 % of it, largest first, as
    [label, fraction of the picture's pixels, [x1, y1, x2, y2] bounding box of its pixels
    (x2, y2 exclusive)]."""
    name = 'deeplabv3-mnv2-pascal'
    entry = models.entries[name]
    labels = models.labels(name)
    result = {}
    for pic in ('dog', 'person', 'horses', 'eagle', 'giraffe'):
        image = picture(data_dir, pic)
        x, scaled = fit_and_pad(image, entry)
        classes = deeplab_classes(models.run(name, x)[entry['outputs'][0]], entry, scaled, image.size)
        found = []
        for c, count in zip(*np.unique(classes, return_counts=True)):
            if count / classes.size >= 0.001:
                ys, xs = np.nonzero(classes == c)
                found.append([labels[c], round(float(count / classes.size), 4),
                              [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]])
        result[pic] = sorted(found, key=lambda f: -f[1])
    largest = {pic: next(f[0] for f in found if f[0] != 'background') for pic, found in result.items()}
    expect(largest['horses'] == 'horse' and largest['eagle'] == 'bird', 'largest classes %s' % largest)
    dog = {f[0]: f for f in result['dog']}
    expect({'dog', 'bicycle', 'car'} <= set(dog), 'dog.jpg classes: %s' % sorted(dog))
    # The dog sits in the lower left of dog.jpg (768x576), NanoDet's box about (131, 221, 360, 541).
    box = dog['dog'][2]
    expect(box[0] < 200 and box[1] > 150 and box[2] < 420 and box[3] > 450, 'dog region %s' % box)
    # The person in person.jpg (640x424) stands in x 180..290, y 95..385 (the horse beside
    # them is bigger: it comes out as sheep).
    person = {f[0]: f for f in result['person']}
    box = person.get('person', [0, 0, [0, 0, 0, 0]])[2]
    expect(box[0] > 170 and box[1] > 85 and box[2] < 300 and box[3] < 395 and person['person'][1] > 0.02,
           'person.jpg person region %s' % person.get('person'))
    return result


def palm_anchors(entry):
    """MediaPipe SSD anchors of the palm detector (fixed size 1, so only centres)."""
    size = entry['input_shape'][1]
    strides = entry['anchor_strides']
    centres, layer = [], 0
    while layer < len(strides):
        last = layer
        while last < len(strides) and strides[last] == strides[layer]:
            last += 1
        grid = -(-size // strides[layer])
        for y in range(grid):
            for x in range(grid):
                centres += [((x + 0.5) / grid, (y + 0.5) / grid)] * (2 * (last - layer))
        layer = last
    return np.array(centres, np.float32)


def palm_decode(outs, entry, anchors, score_threshold=0.5, iou_threshold=0.3):
    """Palm boxes (cx, cy, w, h) and 7 keypoints (x, y), normalised to the input; best first.
    Plain NMS here, where MediaPipe averages overlapping boxes (weighted NMS)."""
    size = entry['input_shape'][1]
    raw, logits = outs['Identity'][0], outs['Identity_1'][0, :, 0]
    scores = sigmoid(np.clip(logits, -100, 100))
    found = []
    for i in np.nonzero(scores >= score_threshold)[0]:
        cx, cy = raw[i, 0] / size + anchors[i, 0], raw[i, 1] / size + anchors[i, 1]
        w, h = raw[i, 2] / size, raw[i, 3] / size
        keypoints = raw[i, 4:].reshape(7, 2) / size + anchors[i]
        found.append((float(scores[i]), (cx, cy, w, h), keypoints))
    boxes = [(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2) for _, (cx, cy, w, h), _ in found]
    keep = nms(boxes, np.array([f[0] for f in found]), iou_threshold) if found else []
    return [found[k] for k in keep]


def hands(models, data_dir):
    """Palm detector, then hand landmarks, on a crop around the wrists in person.jpg."""
    palm = models.entries['mediapipe-palm']
    anchors = palm_anchors(palm)
    expect(len(anchors) == 2016, '%d anchors' % len(anchors))
    left, top, side = 189, 179, 100
    crop = picture(data_dir, 'person').crop((left, top, left + side, top + side))
    outs = models.run('mediapipe-palm', preprocess(crop, palm))
    expect(outs['Identity'].shape == (1, 2016, 18) and outs['Identity_1'].shape == (1, 2016, 1),
           'palm output shapes')
    palms = palm_decode(outs, palm, anchors)
    expect(palms, 'no palm in the crop %s' % [left, top, side])
    result = {'crop_xywh': [left, top, side, side], 'palms': [
        {'score': round(score, 3),
         'box_cxcywh': [round(float(v), 1) for v in (left + cx * side, top + cy * side, w * side, h * side)],
         'keypoints_xy': [[round(float(left + x * side), 1), round(float(top + y * side), 1)] for x, y in kp]}
        for score, (cx, cy, w, h), kp in palms]}
    # Hand landmarks on a square, unrotated crop 2.6 times the palm (MediaPipe also rotates it).
    cx, cy = result['palms'][0]['box_cxcywh'][:2]
    half = 1.3 * max(result['palms'][0]['box_cxcywh'][2:])
    hand_box = [round(cx - half), round(cy - half), round(cx + half), round(cy + half)]
    landmark = models.entries['mediapipe-hand-landmark']
    outs = models.run('mediapipe-hand-landmark', preprocess(picture(data_dir, 'person').crop(hand_box), landmark))
    shapes = {k: list(v.shape) for k, v in outs.items()}
    expect(shapes == {'Identity': [1, 63], 'Identity_1': [1, 1], 'Identity_2': [1, 1], 'Identity_3': [1, 63]},
           'hand landmark shapes %s' % shapes)
    result['hand_landmark'] = {'crop_xyxy': hand_box,
                               'presence': round(float(outs['Identity_1'][0, 0]), 4),
                               'left_probability': round(float(outs['Identity_2'][0, 0]), 4)}
    return result


def action(models, data_dir):
    name = 'i3d-kinetics-400'
    entry = models.entries[name]
    labels = models.labels(name)
    outs = models.run(name, preprocess(picture(data_dir, 'horses'), entry))
    probs = outs['probs'][0]
    expect(outs['logits'].shape == (1, 400) and probs.shape == (400,), 'i3d output shapes')
    expect(abs(float(probs.sum()) - 1.0) < 1e-3, 'probs sum to %s' % probs.sum())
    top = np.argsort(-probs)[:5]
    return {'horses_x16': [[labels[i], round(float(probs[i]), 4)] for i in top]}


def real_input(models, name, data_dir):
    return preprocess(picture(data_dir, 'person'), models.entries[name])


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser()
    parser.add_argument('--models', default=os.path.join(here, '..', '..', 'models'))
    parser.add_argument('--data', default=os.path.join(here, '..', '..', 'tests', 'data'))
    parser.add_argument('--json', help='write the reference results here')
    args = parser.parse_args()
    models = Models(args.models)
    report, failed = {'runtimes': {}}, []
    for name in models.entries:
        try:
            report['runtimes'][name] = check_runtimes(models, name, real_input(models, name, args.data))
            print('ok   %-24s %s' % (name, report['runtimes'][name]))
        except Failure as e:
            failed.append('%s: %s' % (name, e))
            print('FAIL %-24s %s' % (name, e))
    for title, check in (('classification', classify), ('detection', detect), ('pose', movenet),
                         ('segmentation', selfie), ('segmentation-voc', deeplab), ('hands', hands),
                         ('action', action)):
        try:
            report[title] = check(models, args.data)
            print('ok   %s' % title)
            for key, value in report[title].items():
                print('       %s: %s' % (key, json.dumps(value)))
        except Failure as e:
            failed.append('%s: %s' % (title, e))
            print('FAIL %s: %s' % (title, e))
    if args.json:
        del report['runtimes']  # timings and float noise: not a reference
        with open(args.json, 'w') as f:
            json.dump(report, f, indent=1)
            f.write('\n')
    if failed:
        sys.exit('verify: %d failed:\n  %s' % (len(failed), '\n  '.join(failed)))
    print('verify: all %d models ok' % len(models.entries))


if __name__ == '__main__':
    main()
