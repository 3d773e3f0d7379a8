//! jetson-inference's conventions for the ONNX files users bring (`Network::File`): the
//! ImageNet normalisation, the input size the file declares, and files beside the model.

use super::preprocess::{InputSpec, Layout};
use anyhow::Context as _;
use std::path::{Path, PathBuf};
use tract_onnx::pb;
use tract_onnx::prelude::Framework;

/// ImageNet's mean and standard deviation in pixel units (255 * [0.485, 0.456, 0.406] and
/// 255 * [0.229, 0.224, 0.225]): jetson-inference's pose, segmentation and background
/// models take (pixel / 255 - mean) / std.
pub const IMAGENET_MEAN: [f32; 3] = [123.675, 116.28, 103.53];
pub const IMAGENET_STD: [f32; 3] = [58.395, 57.12, 57.375];

/// A user's NCHW picture model's input as jetson-inference feeds it: the size the file
/// declares (`fallback` for open axes, see `input_shape`), ImageNet normalisation.
pub fn imagenet_input(path: &Path, name: &str, fallback: &[usize]) -> anyhow::Result<InputSpec> {
    let shape = input_shape(path, name, fallback)?;
    let (width, height) = Layout::Nchw.size_of(&shape)?;
    Ok(InputSpec::stretched(
        (width, height),
        Layout::Nchw,
        IMAGENET_MEAN,
        IMAGENET_STD,
    ))
}

/// The shape of input `name` (empty: the first input) as the file declares it, with every
/// axis the file leaves open taken from `fallback` (same rank), so the engine can plan for
/// a fixed shape. A file of another rank is refused.
pub fn input_shape(path: &Path, name: &str, fallback: &[usize]) -> anyhow::Result<Vec<usize>> {
    let model = tract_onnx::onnx()
        .proto_model_for_path(path)
        .map_err(|e| anyhow::anyhow!("{e:#}"))
        .with_context(|| format!("cannot read {}", path.display()))?;
    let graph = model.graph.context("the file has no graph")?;
    // Old exporters list the weights among the inputs too; those are not fed.
    let weights: Vec<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let input = graph
        .input
        .iter()
        .filter(|i| !weights.contains(&i.name.as_str()))
        .find(|i| name.is_empty() || i.name == name)
        .with_context(|| format!("{} has no input named {name:?}", path.display()))?;
    let dims = declared_dims(input);
    anyhow::ensure!(
        dims.len() == fallback.len(),
        "input {:?} of {} has {} axes, expected {} like {fallback:?}",
        input.name,
        path.display(),
        dims.len(),
        fallback.len()
    );
    Ok(dims
        .iter()
        .zip(fallback)
        .map(|(dim, &default)| dim.unwrap_or(default))
        .collect())
}

/// The axes of a declared input: `None` where symbolic or unknown.
fn declared_dims(input: &pb::ValueInfoProto) -> Vec<Option<usize>> {
    use pb::tensor_shape_proto::dimension::Value;
    let Some(pb::type_proto::Value::TensorType(tensor)) =
        input.r#type.as_ref().and_then(|t| t.value.as_ref())
    else {
        return Vec::new();
    };
    tensor
        .shape
        .iter()
        .flat_map(|s| &s.dim)
        .map(|d| match d.value {
            Some(Value::DimValue(v)) if v > 0 => Some(v as usize),
            _ => None,
        })
        .collect()
}

/// A file jetson-inference keeps beside the model (`classes.txt`, `colors.txt`), if there.
pub fn beside(model: &Path, name: &str) -> Option<PathBuf> {
    let path = model.with_file_name(name);
    path.is_file().then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn models() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("models")
    }

    #[test]
    fn reads_the_declared_input_and_fills_open_axes() {
        let nanodet = models().join("nanodet.onnx");
        assert_eq!(
            input_shape(&nanodet, "", &[1, 3, 1, 1]).unwrap(),
            vec![1, 3, 416, 416]
        );
        // I3D leaves its time axis open: that one comes from the fallback.
        let i3d = models().join("i3d-kinetics-400.onnx");
        let shape = input_shape(&i3d, "video", &[1, 3, 8, 1, 1]).unwrap();
        assert_eq!(shape, vec![1, 3, 8, 224, 224]);
        let error = input_shape(&nanodet, "nope", &[1]).unwrap_err().to_string();
        assert!(error.contains("no input named \"nope\""), "{error}");
        let error = input_shape(&nanodet, "", &[1, 3]).unwrap_err().to_string();
        assert!(error.contains("has 4 axes"), "{error}");
    }

    #[test]
    fn finds_files_beside_the_model() {
        let model = models().join("nanodet.onnx");
        assert_eq!(
            beside(&model, "coco-labels.txt"),
            Some(models().join("coco-labels.txt"))
        );
        assert_eq!(beside(&model, "colors.txt"), None);
    }
}
