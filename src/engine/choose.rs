//! Which backend `[engine] backend` gets here: an explicit choice runs or fails with the
//! reason (never a silent CPU run); `auto` takes the first of TensorRT, CUDA, ONNX Runtime on
//! the CPU and tract that starts, and says why the ones before it did not.

use super::onnxruntime::{self, OrtEngine, Provider};
use super::{tract::TractEngine, Engine, Loader, ModelInput, Placement, Tensor};
use crate::settings::typed::Engine as EngineSettings;
use std::path::Path;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Backend {
    TensorRt,
    Cuda,
    OnnxRuntime,
    Tract,
}

impl Backend {
    /// `auto`'s order: fastest first; tract always starts.
    pub const AUTO: [Backend; 4] = [
        Backend::TensorRt,
        Backend::Cuda,
        Backend::OnnxRuntime,
        Backend::Tract,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Backend::TensorRt => "tensorrt",
            Backend::Cuda => "cuda",
            Backend::OnnxRuntime => "onnxruntime",
            Backend::Tract => "tract",
        }
    }

    pub fn parse(name: &str) -> Option<Backend> {
        Backend::AUTO.into_iter().find(|b| b.name() == name)
    }

    /// The ONNX Runtime execution provider this backend registers; `None` for tract.
    fn provider(self, settings: &EngineSettings) -> Option<Provider> {
        let device = settings.gpu_device as i32;
        match self {
            Backend::TensorRt => Some(Provider::TensorRt {
                device,
                fp16: settings.fp16,
                cache_dir: settings.cache_dir.clone().into(),
            }),
            Backend::Cuda => Some(Provider::Cuda { device }),
            Backend::OnnxRuntime => Some(Provider::Cpu),
            Backend::Tract => None,
        }
    }

    /// Whether this backend starts here (library loaded, provider registered); says where
    /// its library came from.
    fn probe(self, settings: &EngineSettings) -> anyhow::Result<String> {
        match self.provider(settings) {
            None => Ok("built in".to_owned()),
            Some(provider) => {
                let library = onnxruntime::probe(&settings.onnxruntime_lib, &provider)?;
                Ok(library.display().to_string())
            }
        }
    }

    fn loader(self, settings: &EngineSettings, threads: usize) -> Arc<Loader> {
        let library = settings.onnxruntime_lib.clone();
        let gpu = onnxruntime::GpuUse {
            frame_on_gpu: settings.frame_on_gpu,
            cuda_graphs: settings.cuda_graphs,
        };
        match self.provider(settings) {
            None => Arc::new(move |path: &Path, input: &ModelInput| {
                Ok(Box::new(TractEngine::load(path, input, threads)?) as Box<dyn Engine>)
            }),
            Some(provider) => Arc::new(move |path: &Path, input: &ModelInput| {
                Ok(Box::new(OrtEngine::load(
                    path, input, threads, &library, &provider, gpu,
                )?) as Box<dyn Engine>)
            }),
        }
    }
}

/// The backend in use and why, for `/api/v1/status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Choice {
    pub backend: &'static str,
    pub reason: String,
    pub threads: usize,
    /// False when an explicit choice cannot run here: every model is then in `error`.
    pub runs: bool,
}

/// Picks the backend `[engine]` asks for and a loader for it.
pub fn choose(settings: &EngineSettings) -> (Arc<Loader>, Choice) {
    let threads = match settings.threads {
        0 => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        n => n as usize,
    };
    let auto = settings.backend == "auto";
    let order: Vec<Backend> = if auto {
        Backend::AUTO.to_vec()
    } else {
        Backend::parse(&settings.backend).into_iter().collect()
    };
    let mut refused = Vec::new();
    for backend in order {
        match backend.probe(settings) {
            Ok(found) => {
                let reason = if !auto {
                    format!("chosen in [engine] backend ({found})")
                } else if refused.is_empty() {
                    format!("auto: the first that runs here ({found})")
                } else {
                    format!("auto: {found}; not {}", refused.join("; not "))
                };
                let choice = Choice {
                    backend: backend.name(),
                    reason,
                    threads,
                    runs: true,
                };
                let loader = if auto {
                    let rest = Backend::AUTO.iter().skip_while(|b| **b != backend);
                    falling_back(rest.map(|b| (*b, b.loader(settings, threads))).collect())
                } else {
                    backend.loader(settings, threads)
                };
                return (loader, choice);
            }
            Err(e) => refused.push(format!("{} ({e:#})", backend.name())),
        }
    }
    let reason = format!(
        "[engine] backend = \"{}\" cannot run here: {}",
        settings.backend,
        refused.join("; ")
    );
    let message = reason.clone();
    let loader: Arc<Loader> = Arc::new(move |_: &Path, _: &ModelInput| anyhow::bail!("{message}"));
    let choice = Choice {
        backend: Backend::parse(&settings.backend).map_or("none", Backend::name),
        reason,
        threads,
        runs: false,
    };
    (loader, choice)
}

/// `auto`'s loader: a model whose session will not start on the chosen backend (the provider
/// registered, but this model's session failed) loads on the next backend that takes it, and
/// its placement says why.
fn falling_back(loaders: Vec<(Backend, Arc<Loader>)>) -> Arc<Loader> {
    Arc::new(move |path: &Path, input: &ModelInput| {
        let mut refused = Vec::new();
        for (backend, loader) in &loaders {
            match loader(path, input) {
                Ok(engine) if refused.is_empty() => return Ok(engine),
                Ok(engine) => {
                    let why = refused.join("; ");
                    return Ok(Box::new(FellBack { engine, why }) as Box<dyn Engine>);
                }
                Err(e) => refused.push(format!("not {} ({e:#})", backend.name())),
            }
        }
        anyhow::bail!("{}", refused.join("; "))
    })
}

struct FellBack {
    engine: Box<dyn Engine>,
    why: String,
}

impl Engine for FellBack {
    fn run(&mut self, input: &Tensor) -> anyhow::Result<Vec<Tensor>> {
        self.engine.run(input)
    }

    #[cfg(feature = "gpu")]
    fn run_filled(&mut self, fill: &mut super::Fill<'_>) -> Option<anyhow::Result<Vec<Tensor>>> {
        self.engine.run_filled(fill)
    }

    #[cfg(feature = "gpu")]
    fn run_on_device(
        &mut self,
        fill: &mut super::Fill<'_>,
        decode: &mut super::Decode<'_>,
    ) -> Option<anyhow::Result<()>> {
        self.engine.run_on_device(fill, decode)
    }

    #[cfg(feature = "gpu")]
    fn queue(&mut self, work: &mut super::Fill<'_>) -> Option<anyhow::Result<()>> {
        self.engine.queue(work)
    }

    fn placement(&self) -> Placement {
        Placement {
            fallback: Some(self.why.clone()),
            ..self.engine.placement()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{DType, Io};

    struct Fake;

    impl Engine for Fake {
        fn run(&mut self, _: &Tensor) -> anyhow::Result<Vec<Tensor>> {
            Ok(Vec::new())
        }

        fn placement(&self) -> Placement {
            Placement {
                provider: "cpu".into(),
                ..Placement::default()
            }
        }
    }

    fn load(loaders: Vec<(Backend, Arc<Loader>)>) -> anyhow::Result<Placement> {
        let input = ModelInput {
            name: String::new(),
            shape: vec![1],
            dtype: DType::F32,
            outputs: Vec::new(),
            io: Io::Host,
        };
        Ok(falling_back(loaders)(Path::new("model.onnx"), &input)?.placement())
    }

    fn failing(why: &'static str) -> Arc<Loader> {
        Arc::new(move |_: &Path, _: &ModelInput| anyhow::bail!("{why}"))
    }

    fn working() -> Arc<Loader> {
        Arc::new(|_: &Path, _: &ModelInput| Ok(Box::new(Fake) as Box<dyn Engine>))
    }

    #[test]
    fn a_model_the_chosen_backend_refuses_loads_on_the_next_and_says_why() {
        let placement = load(vec![
            (Backend::Cuda, failing("no CUDA device")),
            (Backend::OnnxRuntime, working()),
        ])
        .unwrap();
        assert_eq!(placement.provider, "cpu");
        assert_eq!(
            placement.fallback.as_deref(),
            Some("not cuda (no CUDA device)")
        );
    }

    #[test]
    fn a_model_the_chosen_backend_takes_has_no_fallback_and_none_that_loads_is_an_error() {
        let taken = load(vec![
            (Backend::Cuda, working()),
            (Backend::Tract, working()),
        ]);
        assert_eq!(taken.unwrap().fallback, None);
        let refused = load(vec![
            (Backend::Cuda, failing("a")),
            (Backend::Tract, failing("b")),
        ]);
        assert_eq!(
            refused.unwrap_err().to_string(),
            "not cuda (a); not tract (b)"
        );
    }
}
