//! `visiond bench [--backend NAME]`: prints, never asserts. Per model, the median milliseconds
//! a frame for the backend (ONNX Runtime on the CPU by default), a CPU engine to compare with,
//! and onnxruntime's own Python API on the CPU with the same file and thread count; then the whole pipeline's frame rate at 1280x720 with every default
//! model on, with the time its engines took in that run (the rest is pre/post-processing and
//! drawing).
//! `visiond bench --webrtc` measures the WebRTC path instead (see `webrtc`).

#[cfg(feature = "gpu")]
mod layers;
#[cfg(feature = "gpu")]
mod preprocess;
pub mod reload;
pub mod webrtc;

use crate::engine::{Backend, DType, Engine, Io, Loader, ModelInput, Tensor, TensorData};
use crate::media::{images, Frame};
use crate::settings::values::Values;
use crate::vision::{self, catalog::Catalog};
use serde_json::json;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

pub struct Options {
    pub threads: usize,
    pub iterations: usize,
    pub picture: std::path::PathBuf,
    /// The backend measured and used for the pipeline; each model is also timed on `compared`.
    pub backend: Backend,
}

impl Options {
    /// The CPU engine to hold the measured one against: tract for ONNX Runtime on the CPU,
    /// ONNX Runtime on the CPU for the rest.
    fn compared(&self) -> Backend {
        match self.backend {
            Backend::OnnxRuntime => Backend::Tract,
            _ => Backend::OnnxRuntime,
        }
    }
}

pub fn run(options: &Options) -> anyhow::Result<()> {
    let catalog = Catalog::locate()?;
    let (measured, compared) = (options.backend.name(), options.compared().name());
    println!(
        "threads {}, {} runs a model (median), models in {}\n",
        options.threads,
        options.iterations,
        catalog.dir.display()
    );
    let loader = |backend: Backend| {
        let (loader, choice) = crate::engine::choose(&settings_for(backend, options).engine);
        println!("{}: {}", choice.backend, choice.reason);
        loader
    };
    let (measured_loader, compared_loader) = (loader(options.backend), loader(options.compared()));
    println!("\n| model | {measured} (visiond) ms | {compared} (visiond) ms | onnxruntime CPU (Python) ms | {measured} / Python | {measured} / {compared} |");
    println!("|---|---:|---:|---:|---:|---:|");
    let mut engine_ms = std::collections::HashMap::new();
    for entry in &catalog.entries {
        let path = catalog.path_of(entry);
        let input = model_input(entry);
        let tensor = random_input(&input);
        let time = |loader: &Loader| {
            loader(&path, &input).map(|e| median_ms(e, &tensor, options.iterations))
        };
        let (chosen, other) = (
            time(measured_loader.as_ref()),
            time(compared_loader.as_ref()),
        );
        let python = python_median_ms(&path, &input, &tensor, options.threads, options.iterations);
        let cell = |r: &anyhow::Result<f64>| {
            r.as_ref()
                .map(|ms| format!("{ms:.2}"))
                .unwrap_or_else(|e| format!("n/a ({e})"))
        };
        let ratio = |a: &anyhow::Result<f64>, b: &anyhow::Result<f64>| match (a, b) {
            (Ok(a), Ok(b)) => format!("{:.2}x", a / b),
            _ => "n/a".to_owned(),
        };
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            entry.name,
            cell(&chosen),
            cell(&other),
            cell(&python),
            ratio(&chosen, &python),
            ratio(&chosen, &other)
        );
        engine_ms.insert(entry.name.clone(), chosen.ok());
    }
    let on_gpu = matches!(options.backend, Backend::Cuda | Backend::TensorRt);
    #[cfg(feature = "gpu")]
    if on_gpu {
        let device = settings_for(options.backend, options).engine.gpu_device as usize;
        // CUDA's provider also runs each model as a CUDA graph.
        let graphs = (options.backend == Backend::Cuda).then(|| {
            let mut settings = settings_for(options.backend, options);
            settings.engine.cuda_graphs = true;
            crate::engine::choose(&settings.engine).0
        });
        let loaders = preprocess::Loaders {
            measured: measured_loader.as_ref(),
            graphs: graphs.as_deref(),
        };
        if let Err(e) = preprocess::compare(&catalog, &loaders, device, options.iterations) {
            println!("\nPre-processing on the GPU: not measured: {e:#}");
        }
    }
    pipeline_rate(&catalog, options, &engine_ms, true, false)?;
    if options.backend == Backend::Cuda {
        if let Err(e) = pipeline_rate(&catalog, options, &engine_ms, true, true) {
            println!("\nWhole pipeline as CUDA graphs: not measured: {e:#}");
        }
    }
    if on_gpu {
        // The same with every model's pre-processing on the CPU, each input copied up.
        pipeline_rate(&catalog, options, &engine_ms, false, false)?;
    }
    Ok(())
}

/// The defaults with every model on and `[engine]` set to `backend` and the bench's threads.
fn settings_for(backend: Backend, options: &Options) -> crate::settings::Settings {
    let mut values = Values::defaults();
    for section in crate::settings::schema::MODEL_SECTIONS {
        values.set(
            Values::index(section, "enabled").expect("every model has enabled"),
            json!(true),
        );
    }
    values.set(
        Values::index("engine", "threads").expect("engine.threads"),
        json!(options.threads),
    );
    values.set(
        Values::index("engine", "backend").expect("engine.backend"),
        json!(backend.name()),
    );
    values.to_settings()
}

/// Milliseconds of the measured backend's engine alone for each catalog model.
type EngineTimes = std::collections::HashMap<String, Option<f64>>;

fn model_input(entry: &vision::catalog::Entry) -> ModelInput {
    let mut shape = entry.input_shape.clone();
    if entry.layout == "ncthw" && shape.get(2) == Some(&0) {
        shape[2] = 16;
    }
    let dtype = if entry.dtype == "i32" {
        DType::I32
    } else {
        DType::F32
    };
    ModelInput {
        name: entry.input.clone(),
        shape,
        dtype,
        outputs: entry.outputs.clone(),
        // Timed on host tensors: the frame-to-outputs times on the GPU are in `preprocess`.
        io: Io::Host,
    }
}

/// A fixed pseudo-random input of the right shape (pixel-like values).
fn random_input(input: &ModelInput) -> Tensor {
    let count: usize = input.shape.iter().product();
    let mut seed = 0x2545_f491_u32;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        seed % 256
    };
    let data = match input.dtype {
        DType::I32 => TensorData::I32((0..count).map(|_| next() as i32).collect()),
        DType::F32 => TensorData::F32((0..count).map(|_| next() as f32 / 127.5 - 1.0).collect()),
    };
    Tensor {
        shape: input.shape.clone(),
        data,
    }
}

fn median_ms(mut engine: Box<dyn Engine>, input: &Tensor, iterations: usize) -> f64 {
    // The unmeasured first run takes the allocations and lazy setup.
    let run = || {
        let _ = engine.run(input);
        Ok(())
    };
    timed(iterations, run).expect("a run that cannot fail")
}

/// The median milliseconds of `iterations` runs of `work`, after one unmeasured run.
fn timed(iterations: usize, mut work: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    work()?;
    let mut times = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let start = Instant::now();
        work()?;
        times.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(median(&mut times))
}

fn median(times: &mut [f64]) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

const PYTHON: &str = r#"
import sys, time, numpy as np, onnxruntime as ort
path, name, shape, dtype, data, threads, iterations = sys.argv[1], sys.argv[2], [int(x) for x in sys.argv[3].split(',')], sys.argv[4], sys.argv[5], int(sys.argv[6]), int(sys.argv[7])
options = ort.SessionOptions(); options.intra_op_num_threads = threads
options.add_session_config_entry('session.intra_op.allow_spinning', '0')  # as visiond's sessions
session = ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])
name = name or session.get_inputs()[0].name
x = np.fromfile(data, dtype='<i4' if dtype == 'i32' else '<f4').reshape(shape)
session.run(None, {name: x})
times = []
for _ in range(iterations):
    start = time.perf_counter(); session.run(None, {name: x}); times.append((time.perf_counter() - start) * 1000)
print(sorted(times)[len(times) // 2])
"#;

/// The same model on the same input through onnxruntime's Python API (`python3` with
/// onnxruntime and numpy installed). The input goes over as raw bytes: the values matter,
/// since denormal floats inside a network can slow it severalfold.
fn python_median_ms(
    path: &Path,
    input: &ModelInput,
    tensor: &Tensor,
    threads: usize,
    iterations: usize,
) -> anyhow::Result<f64> {
    let shape: Vec<String> = input.shape.iter().map(|d| d.to_string()).collect();
    let (dtype, bytes): (&str, Vec<u8>) = match &tensor.data {
        TensorData::I32(v) => ("i32", v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        TensorData::F32(v) => ("f32", v.iter().flat_map(|x| x.to_le_bytes()).collect()),
    };
    let data = std::env::temp_dir().join(format!("visiond-bench-{}.bin", std::process::id()));
    std::fs::write(&data, bytes)?;
    let output =
        Command::new(std::env::var("VISIOND_BENCH_PYTHON").unwrap_or_else(|_| "python3".into()))
            .args(["-c", PYTHON])
            .arg(path)
            .arg(&input.name)
            .arg(shape.join(","))
            .arg(dtype)
            .arg(&data)
            .arg(threads.to_string())
            .arg(iterations.to_string())
            .output();
    let _ = std::fs::remove_file(&data);
    let output = output?;
    anyhow::ensure!(
        output.status.success(),
        "python3 with onnxruntime: {}",
        String::from_utf8_lossy(&output.stderr)
            .lines()
            .last()
            .unwrap_or("")
    );
    Ok(String::from_utf8(output.stdout)?.trim().parse()?)
}

/// Every default model on one 1280x720 frame, as the pipeline runs them. The engines' time
/// is measured inside this run (each task's engine is wrapped in a stopwatch), because the
/// tasks do not run every network on every frame (action runs I3D on each sampled frame once
/// its window is full; hands run the landmark model only where a palm was found).
fn pipeline_rate(
    catalog: &Catalog,
    options: &Options,
    engine_ms: &EngineTimes,
    frame_on_gpu: bool,
    cuda_graphs: bool,
) -> anyhow::Result<()> {
    let mut settings = settings_for(options.backend, options);
    settings.engine.frame_on_gpu = frame_on_gpu;
    settings.engine.cuda_graphs = cuda_graphs;
    let (loader, choice) = crate::engine::choose(&settings.engine);
    // A stopwatch for each task's engines, in `tasks` order.
    let (mut tasks, mut stopwatches) = (Vec::new(), Vec::new());
    for section in vision::DRAW_ORDER {
        let stopwatch = Stopwatch::default();
        let timed_loader = stopwatch.wrap(loader.clone());
        let ctx = vision::Context {
            catalog,
            loader: timed_loader.as_ref(),
        };
        match vision::build(section, &settings, &ctx) {
            Ok(task) => {
                tasks.push((section, task));
                stopwatches.push(stopwatch);
            }
            Err(e) => println!("\n{section}: not benchmarked: {e:#}"),
        }
    }
    let frame = images::fit(&Frame::load(&options.picture)?, 1280, 720);
    // Unmeasured: the first run of every network, and until every task's window is full.
    let warm_up = tasks
        .iter()
        .map(|(_, task)| task.frames_needed(&settings))
        .max()
        .unwrap_or(1);
    // As the pipeline runs them: side by side on a GPU, in turn on the CPU.
    let on_gpu = matches!(choice.backend, "cuda" | "tensorrt");
    let mut frames = Vec::new();
    // Each task's own time over the measured frames: where a frame's time goes.
    let task_ms = std::sync::Mutex::new(std::collections::BTreeMap::<&str, f64>::new());
    // Of which in its engines: the GPU fill, inference and outputs, or a host tensor's run.
    let mut task_engine_ms = std::collections::BTreeMap::<&str, f64>::new();
    let lanes = crate::pipeline::lanes::Lanes::new(tasks.len())?;
    for i in 0..warm_up + options.iterations {
        stopwatches.iter().for_each(Stopwatch::reset);
        let start = Instant::now();
        let mut annotated = frame.clone();
        let failures = std::sync::Mutex::new(Vec::new());
        lanes.run(
            tasks.iter_mut().enumerate(),
            |(lane, _)| on_gpu.then_some(*lane),
            |(_, (section, task))| {
                let task_start = Instant::now();
                if let Err(e) = task.process(&annotated, &settings) {
                    failures.lock().unwrap().push(format!("{section}: {e:#}"));
                }
                if i >= warm_up {
                    let ms = task_start.elapsed().as_secs_f64() * 1000.0;
                    *task_ms.lock().unwrap().entry(*section).or_default() += ms;
                }
            },
        );
        if let Some(failure) = failures.into_inner().unwrap().pop() {
            anyhow::bail!(failure);
        }
        let processed = start.elapsed().as_secs_f64() * 1000.0;
        let drawn: Vec<&dyn vision::Task> = tasks.iter().map(|(_, task)| task.as_ref()).collect();
        vision::draw(&drawn, &mut annotated, &settings);
        if i >= warm_up {
            let frame_ms = start.elapsed().as_secs_f64() * 1000.0;
            let engines: f64 = stopwatches.iter().map(Stopwatch::ms).sum();
            frames.push((frame_ms, engines, processed));
            for ((section, _), stopwatch) in tasks.iter().zip(&stopwatches) {
                *task_engine_ms.entry(*section).or_default() += stopwatch.ms();
            }
        }
    }
    let count = frames.len() as f64;
    let mean = |pick: fn(&(f64, f64, f64)) -> f64| frames.iter().map(pick).sum::<f64>() / count;
    let frame_mean = mean(|f| f.0);
    let engines_mean = mean(|f| f.1);
    let drawing_mean = frame_mean - mean(|f| f.2);
    let mut frame_ms: Vec<f64> = frames.iter().map(|f| f.0).collect();
    // The single-model table's times added up, as if every network ran on every frame.
    let single_sum: f64 = tasks
        .iter()
        .filter_map(|(section, _)| {
            let network = &settings.model(section)?.network;
            *engine_ms.get(network)?
        })
        .sum();
    let (inputs_on_gpu, engines) = stopwatches
        .iter()
        .map(Stopwatch::inputs_on_gpu)
        .fold((0, 0), |(a, b), (c, d)| (a + c, b + d));
    println!(
        "\nWhole pipeline at 1280x720, {} ({} threads, engine.frame_on_gpu = {frame_on_gpu}: {inputs_on_gpu} of {engines} networks take their input on the GPU; cuda_graphs = {cuda_graphs}), {} frames after {warm_up} to fill the windows; models: {}",
        choice.backend,
        options.threads,
        frames.len(),
        tasks.iter().map(|(s, _)| *s).collect::<Vec<_>>().join(", ")
    );
    // Side by side, the engines' times overlap each other and the CPU work: their sum is
    // not a part of the frame, and only the drawing is measured apart.
    let rest = if on_gpu {
        "(runs overlap)".to_owned()
    } else {
        let overhead = frame_mean - engines_mean;
        format!("{overhead:.1} ({:.1}%)", 100.0 * overhead / frame_mean)
    };
    println!("| frame ms (mean) | frame ms (median) | FPS | engines ms a frame (in this run, added up) | single-model times added up | drawing ms | pre/post-processing and drawing ms (share) |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {frame_mean:.1} | {:.1} | {:.1} | {engines_mean:.1} | {single_sum:.1} | {drawing_mean:.1} | {rest} |",
        median(&mut frame_ms),
        1000.0 / frame_mean,
    );
    println!("\n| task | ms a frame (mean): pre-processing, inference, decoding | of which in its engines (GPU fill, inference, outputs) | the rest, on the CPU (host pre-processing, decoding) |");
    println!("|---|---:|---:|---:|");
    for (section, total) in task_ms.into_inner().unwrap() {
        let engine = task_engine_ms.get(section).copied().unwrap_or(0.0);
        println!(
            "| {section} | {:.2} | {:.2} | {:.2} |",
            total / count,
            engine / count,
            (total - engine) / count
        );
    }
    #[cfg(feature = "gpu")]
    if on_gpu && frame_on_gpu {
        if let Err(e) = layers::compare(&mut tasks, &frame, &settings, options.iterations) {
            println!("\nOverlays on the GPU: not compared: {e:#}");
        }
    }
    Ok(())
}

/// Time spent inside `Engine::run`, over every engine a loader made, and which of those
/// engines take their input on the GPU.
#[derive(Clone, Default)]
struct Stopwatch {
    nanoseconds: Arc<AtomicU64>,
    placements: Arc<std::sync::Mutex<Vec<crate::engine::Placement>>>,
}

impl Stopwatch {
    fn wrap(&self, loader: Arc<Loader>) -> Arc<Loader> {
        let stopwatch = self.clone();
        Arc::new(move |path: &Path, input: &ModelInput| {
            let engine = loader(path, input)?;
            stopwatch
                .placements
                .lock()
                .unwrap()
                .push(engine.placement());
            Ok(Box::new(Timed {
                engine,
                stopwatch: stopwatch.clone(),
            }) as Box<dyn Engine>)
        })
    }

    fn add(&self, spent: std::time::Duration) {
        self.nanoseconds
            .fetch_add(spent.as_nanos() as u64, Ordering::Relaxed);
    }

    fn reset(&self) {
        self.nanoseconds.store(0, Ordering::Relaxed);
    }

    fn ms(&self) -> f64 {
        self.nanoseconds.load(Ordering::Relaxed) as f64 / 1e6
    }

    /// (engines whose input is on the GPU, engines).
    fn inputs_on_gpu(&self) -> (usize, usize) {
        let placements = self.placements.lock().unwrap();
        let on_gpu = placements.iter().filter(|p| p.input_on_gpu).count();
        (on_gpu, placements.len())
    }
}

struct Timed {
    engine: Box<dyn Engine>,
    stopwatch: Stopwatch,
}

impl Engine for Timed {
    fn run(&mut self, input: &Tensor) -> anyhow::Result<Vec<Tensor>> {
        let start = Instant::now();
        let outputs = self.engine.run(input);
        self.stopwatch.add(start.elapsed());
        outputs
    }

    /// Timed from the fill: the input's pre-processing on the GPU queues with inference.
    #[cfg(feature = "gpu")]
    fn run_filled(
        &mut self,
        fill: &mut crate::engine::Fill<'_>,
    ) -> Option<anyhow::Result<Vec<Tensor>>> {
        let start = Instant::now();
        let outputs = self.engine.run_filled(fill);
        self.stopwatch.add(start.elapsed());
        outputs
    }

    #[cfg(feature = "gpu")]
    fn run_on_device(
        &mut self,
        fill: &mut crate::engine::Fill<'_>,
        decode: &mut crate::engine::Decode<'_>,
    ) -> Option<anyhow::Result<()>> {
        let start = Instant::now();
        let done = self.engine.run_on_device(fill, decode);
        self.stopwatch.add(start.elapsed());
        done
    }

    /// Not timed: the queued work runs with the next run, which is.
    #[cfg(feature = "gpu")]
    fn queue(&mut self, work: &mut crate::engine::Fill<'_>) -> Option<anyhow::Result<()>> {
        self.engine.queue(work)
    }

    fn placement(&self) -> crate::engine::Placement {
        self.engine.placement()
    }
}
