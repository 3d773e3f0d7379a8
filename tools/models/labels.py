# Writes the label files that go with the models (one name per line, in the order of the model's output indices).
"""Usage: labels.py OUT_DIR IMAGENET_CLEAN_NAMES_JSON COCO_NAMES KINETICS400_TXT VOC_NAMES"""
import json
import os
import sys

# MoveNet's keypoint order (the COCO order).
COCO_KEYPOINTS = [
    'nose', 'left_eye', 'right_eye', 'left_ear', 'right_ear', 'left_shoulder', 'right_shoulder',
    'left_elbow', 'right_elbow', 'left_wrist', 'right_wrist', 'left_hip', 'right_hip',
    'left_knee', 'right_knee', 'left_ankle', 'right_ankle',
]

# MediaPipe hand landmark order.
HAND_KEYPOINTS = [
    'wrist', 'thumb_cmc', 'thumb_mcp', 'thumb_ip', 'thumb_tip',
    'index_finger_mcp', 'index_finger_pip', 'index_finger_dip', 'index_finger_tip',
    'middle_finger_mcp', 'middle_finger_pip', 'middle_finger_dip', 'middle_finger_tip',
    'ring_finger_mcp', 'ring_finger_pip', 'ring_finger_dip', 'ring_finger_tip',
    'pinky_mcp', 'pinky_pip', 'pinky_dip', 'pinky_tip',
]

SELFIE = ['background', 'person']


def read_lines(path):
    with open(path) as f:
        return [line.strip() for line in f if line.strip()]


def write(out_dir, name, labels, count):
    assert len(labels) == count, (name, len(labels))
    assert all('\n' not in x for x in labels)
    with open(os.path.join(out_dir, name), 'w') as f:
        f.write('\n'.join(labels) + '\n')


def main():
    out_dir, imagenet_json, coco_names, kinetics, voc_names = sys.argv[1:6]
    with open(imagenet_json) as f:
        write(out_dir, 'imagenet-labels.txt', json.load(f), 1000)
    write(out_dir, 'coco-labels.txt', read_lines(coco_names), 80)
    write(out_dir, 'kinetics400-labels.txt', read_lines(kinetics), 400)
    # DeepLab's PASCAL VOC classes: background (index 0), then the 20 VOC classes in the
    # VOC order, which darknet's voc.names has (spelled like coco.names: aeroplane, ...).
    write(out_dir, 'pascal-voc-labels.txt', ['background'] + read_lines(voc_names), 21)
    write(out_dir, 'coco-keypoints.txt', COCO_KEYPOINTS, 17)
    write(out_dir, 'hand-keypoints.txt', HAND_KEYPOINTS, 21)
    write(out_dir, 'selfie-labels.txt', SELFIE, 2)


if __name__ == '__main__':
    main()
