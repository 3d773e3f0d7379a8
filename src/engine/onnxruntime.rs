//! The ONNX Runtime backend through `ort`, with the library loaded at run time: the PyPI
//! wheel's libonnxruntime.so here, the onnxruntime-gpu build on a Jetson (whose TensorRT and
//! CUDA execution providers are how visiond reaches TensorRT).

use super::{Engine, ModelInput, Tensor, TensorData};
use anyhow::Context;
use ort::session::Session;
use ort::value::{TensorRef, ValueType};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The library can be loaded once per process; the first successful path wins.
static RUNTIME: OnceLock<Result<(PathBuf, ort::environment::Environment), String>> =
    OnceLock::new();

/// Where libonnxruntime.so is looked for, in order: the `engine.onnxruntime_lib` setting,
/// `$ORT_DYLIB_PATH`, beside the binary, the package's `/usr/lib/visiond`, the checkout's
/// `vendor/onnxruntime` (tools/setup puts it there), then the system's library path.
pub fn candidates(setting: &str) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    if !setting.is_empty() {
        paths.push(PathBuf::from(setting));
    }
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH") {
        paths.push(PathBuf::from(path));
    }
    if let Some(bin) = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_owned))
    {
        paths.push(bin.join("libonnxruntime.so"));
        paths.push(bin.join("../lib/visiond/libonnxruntime.so"));
    }
    paths.push(PathBuf::from("/usr/lib/visiond/libonnxruntime.so"));
    paths.push(PathBuf::from("vendor/onnxruntime/libonnxruntime.so"));
    paths.push(PathBuf::from("libonnxruntime.so"));
    paths
}

/// Loads the library (once) and returns the path it came from.
pub fn runtime(setting: &str) -> anyhow::Result<&'static Path> {
    let loaded = RUNTIME.get_or_init(|| {
        let mut tried = Vec::new();
        for path in candidates(setting) {
            // A bare name goes to the dynamic loader's search path; a path must exist.
            if path.components().count() > 1 && !path.exists() {
                continue;
            }
            match ort::init_from(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| b.build().map_err(|e| e.to_string()))
            {
                Ok(environment) => return Ok((path, environment)),
                Err(e) => tried.push(format!("{}: {e}", path.display())),
            }
        }
        Err(format!(
            "libonnxruntime.so not found or not loadable ({})",
            tried.join("; ")
        ))
    });
    match loaded {
        Ok((path, _)) => Ok(path),
        Err(e) => anyhow::bail!("{e}"),
    }
}

pub struct OrtEngine {
    session: Session,
    input: String,
    outputs: Vec<String>,
}

impl OrtEngine {
    pub fn load(
        path: &Path,
        input: &ModelInput,
        threads: usize,
        library: &str,
    ) -> anyhow::Result<OrtEngine> {
        runtime(library)?;
        let (_, environment) = RUNTIME
            .get()
            .and_then(|r| r.as_ref().ok())
            .context("onnxruntime is not loaded")?;
        // No spinning: the pipeline runs several sessions in turn, each with its own thread
        // pool, and threads left spinning after one model's run take the cores from the next
        // (six models in turn: 281 ms of inference a frame with it, 187 ms without).
        let mut builder = Session::builder(environment)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .with_intra_op_spinning(false)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        if threads > 0 {
            builder = builder
                .with_intra_threads(threads)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        let session = builder
            .commit_from_file(path)
            .map_err(|e| anyhow::anyhow!("{e}"))
            .with_context(|| format!("cannot load {}", path.display()))?;
        let input_name = match input.name.as_str() {
            "" => session
                .inputs()
                .first()
                .context("the model has no input")?
                .name()
                .to_owned(),
            name if session.inputs().iter().any(|i| i.name() == name) => name.to_owned(),
            name => anyhow::bail!("the model has no input named {name:?}"),
        };
        let available: Vec<String> = session
            .outputs()
            .iter()
            .map(|o| o.name().to_owned())
            .collect();
        let outputs = if input.outputs.is_empty() {
            available.clone()
        } else {
            input.outputs.clone()
        };
        if let Some(missing) = outputs.iter().find(|o| !available.contains(o)) {
            anyhow::bail!("the model has no output named {missing:?} (it has {available:?})");
        }
        Ok(OrtEngine {
            session,
            input: input_name,
            outputs,
        })
    }
}

impl Engine for OrtEngine {
    fn run(&mut self, input: &Tensor) -> anyhow::Result<Vec<Tensor>> {
        let shape: Vec<i64> = input.shape.iter().map(|&d| d as i64).collect();
        // Views over our buffers: nothing is copied on the way in.
        let value = match &input.data {
            TensorData::F32(v) => TensorRef::from_array_view((shape, v.as_slice()))?.into_dyn(),
            TensorData::I32(v) => TensorRef::from_array_view((shape, v.as_slice()))?.into_dyn(),
        };
        let outputs = self
            .session
            .run(ort::inputs![self.input.as_str() => value])?;
        self.outputs
            .iter()
            .map(|name| {
                let output = &outputs[name.as_str()];
                let is_i32 = matches!(
                    output.dtype(),
                    ValueType::Tensor {
                        ty: ort::value::TensorElementType::Int32,
                        ..
                    }
                );
                let (shape, data) = if is_i32 {
                    let (shape, data) = output.try_extract_tensor::<i32>()?;
                    (shape.to_vec(), TensorData::I32(data.to_vec()))
                } else {
                    let (shape, data) = output.try_extract_tensor::<f32>()?;
                    (shape.to_vec(), TensorData::F32(data.to_vec()))
                };
                Ok(Tensor {
                    shape: shape.iter().map(|&d| d as usize).collect(),
                    data,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{tract::TractEngine, DType};

    #[test]
    fn matches_tract_on_a_shipped_model() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/models/movenet-lightning.onnx"
        ));
        let input = ModelInput {
            name: String::new(),
            shape: vec![1, 192, 192, 3],
            dtype: DType::I32,
            outputs: vec![],
        };
        let Ok(mut ort) = OrtEngine::load(path, &input, 1, "") else {
            panic!("libonnxruntime.so is missing: run tools/fetch-onnxruntime")
        };
        let mut tract = TractEngine::load(path, &input, 1).unwrap();
        let pixels = Tensor {
            shape: input.shape.clone(),
            data: TensorData::I32((0..192 * 192 * 3).map(|i: i32| i * 7 % 256).collect()),
        };
        let (a, b) = (ort.run(&pixels).unwrap(), tract.run(&pixels).unwrap());
        assert_eq!(a[0].shape, vec![1, 1, 17, 3]);
        assert_eq!(a[0].shape, b[0].shape);
        let largest_difference = a[0]
            .as_f32()
            .iter()
            .zip(b[0].as_f32().iter())
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        assert!(largest_difference < 1e-3, "{largest_difference}");
    }
}
