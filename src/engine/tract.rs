//! The tract backend: pure Rust, always built, the fallback. Models are planned once for the
//! task's fixed input shape (`into_optimized`), which is what makes tract fast.

use super::{DType, Engine, ModelInput, Placement, Tensor, TensorData};
use anyhow::Context;
use std::path::Path;
use tract_linalg::multithread::{multithread_tract_scope, Executor};
use tract_onnx::prelude::*;

pub struct TractEngine {
    plan: std::sync::Arc<TypedRunnableModel>,
    executor: Executor,
    /// Model output index for each output the task asked for, in its order.
    order: Vec<usize>,
}

impl TractEngine {
    pub fn load(path: &Path, input: &ModelInput, threads: usize) -> anyhow::Result<TractEngine> {
        let mut model = tract_onnx::onnx()
            .model_for_path(path)
            .map_err(|e| anyhow::anyhow!("{e:#}"))
            .with_context(|| format!("cannot load {}", path.display()))?;
        let index = input_index(&model, &input.name)?;
        let datum = match input.dtype {
            DType::F32 => f32::datum_type(),
            DType::I32 => i32::datum_type(),
        };
        // Only the input the task feeds stays an input; fix its shape so tract can plan.
        let input_outlet = model.input_outlets().map_err(|e| anyhow::anyhow!("{e}"))?[index];
        model
            .set_input_outlets(&[input_outlet])
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        model
            .set_input_fact(0, InferenceFact::dt_shape(datum, &input.shape))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let names: Vec<String> = model
            .output_outlets()
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .iter()
            .map(|o| model.node(o.node).name.clone())
            .collect();
        let order = output_order(&names, &input.outputs, |o| {
            model
                .outlet_label(model.output_outlets().ok()?[o])
                .map(str::to_owned)
        })?;
        let plan = model
            .into_optimized()
            .and_then(|m| m.into_runnable())
            .map_err(|e| anyhow::anyhow!("{e:#}"))
            .with_context(|| {
                format!("cannot plan {} for input {:?}", path.display(), input.shape)
            })?;
        let executor = match threads {
            0 | 1 => Executor::SingleThread,
            n => Executor::multithread(n),
        };
        Ok(TractEngine {
            plan,
            executor,
            order,
        })
    }
}

fn input_index(model: &InferenceModel, name: &str) -> anyhow::Result<usize> {
    if name.is_empty() {
        return Ok(0);
    }
    let outlets = model.input_outlets().map_err(|e| anyhow::anyhow!("{e}"))?;
    outlets
        .iter()
        .position(|o| model.node(o.node).name == name)
        .ok_or_else(|| anyhow::anyhow!("the model has no input named {name:?}"))
}

/// Maps wanted output names onto the model's outputs (by node name or outlet label).
fn output_order(
    node_names: &[String],
    wanted: &[String],
    label: impl Fn(usize) -> Option<String>,
) -> anyhow::Result<Vec<usize>> {
    if wanted.is_empty() {
        return Ok((0..node_names.len()).collect());
    }
    wanted
        .iter()
        .map(|name| {
            (0..node_names.len())
                .find(|&i| &node_names[i] == name || label(i).as_deref() == Some(name.as_str()))
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "the model has no output named {name:?} (it has {node_names:?})"
                    )
                })
        })
        .collect()
}

impl Engine for TractEngine {
    fn run(&mut self, input: &Tensor) -> anyhow::Result<Vec<Tensor>> {
        let value: TValue = match &input.data {
            TensorData::F32(v) => {
                tract_ndarray::ArrayD::from_shape_vec(input.shape.clone(), v.clone())?.into_tvalue()
            }
            TensorData::I32(v) => {
                tract_ndarray::ArrayD::from_shape_vec(input.shape.clone(), v.clone())?.into_tvalue()
            }
        };
        let outputs =
            multithread_tract_scope(self.executor.clone(), || self.plan.run(tvec![value]))
                .map_err(|e| anyhow::anyhow!("{e:#}"))?;
        self.order
            .iter()
            .map(|&i| {
                let output = &outputs[i];
                let shape = output.shape().to_vec();
                let data = match output.datum_type() {
                    DatumType::I32 => TensorData::I32(plain(output)?),
                    _ => TensorData::F32(plain(
                        &*output
                            .cast_to::<f32>()
                            .map_err(|e| anyhow::anyhow!("{e}"))?,
                    )?),
                };
                Ok(Tensor { shape, data })
            })
            .collect()
    }

    fn placement(&self) -> Placement {
        Placement {
            provider: "tract".to_owned(),
            ..Placement::default()
        }
    }
}

fn plain<D: Datum + Copy>(tensor: &tract_onnx::prelude::Tensor) -> anyhow::Result<Vec<D>> {
    let view = tensor
        .to_plain_array_view::<D>()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(view.iter().copied().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Io;

    #[test]
    fn runs_a_shipped_model_and_orders_outputs_by_name() {
        let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/models"));
        let input = ModelInput {
            name: "input_1:0".into(),
            shape: vec![1, 3, 416, 416],
            dtype: DType::F32,
            outputs: vec!["reg_32".into(), "cls_8".into()],
            io: Io::Host,
        };
        let mut engine = TractEngine::load(&dir.join("nanodet.onnx"), &input, 1).unwrap();
        let outputs = engine
            .run(&Tensor::f32(vec![1, 3, 416, 416], vec![0.0; 3 * 416 * 416]))
            .unwrap();
        assert_eq!(outputs[0].shape, vec![1, 169, 44]);
        assert_eq!(outputs[1].shape, vec![1, 2704, 80]);
        let wrong = ModelInput {
            outputs: vec!["nope".into()],
            ..input
        };
        let error = TractEngine::load(&dir.join("nanodet.onnx"), &wrong, 1)
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("no output named \"nope\""), "{error}");
    }
}
