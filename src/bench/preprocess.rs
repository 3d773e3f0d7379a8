//! Part of `visiond bench` on a GPU backend: each picture model's pre-processing kernel
//! against its CPU twin (`InputSpec::tensor`) on the test pictures, as they come and fitted
//! to 1280x720: the largest difference in the model's input units and in pixel levels, and
//! the time of each at 1280x720; then each model from a 1280x720 frame to its outputs on the
//! host, with the frame on the GPU (and, on CUDA's provider, as a CUDA graph too) and with a
//! host tensor.

use super::timed;
use crate::engine::{DType, Engine, Io, Loader, ModelInput, Tensor};
use crate::gpu::Gpu;
use crate::media::{images, Frame};
use crate::vision::catalog::Catalog;
use crate::vision::preprocess::InputSpec;
use cudarc::driver::{CudaStream, DevicePtrMut};
use std::path::PathBuf;
use std::sync::Arc;

/// The measured backend's loader, and on CUDA's provider the same with `cuda_graphs` on.
pub struct Loaders<'a> {
    pub measured: &'a Loader,
    pub graphs: Option<&'a Loader>,
}

pub fn compare(
    catalog: &Catalog,
    loaders: &Loaders<'_>,
    device: usize,
    iterations: usize,
) -> anyhow::Result<()> {
    let gpu = crate::gpu::get(device).map_err(anyhow::Error::msg)?;
    let stream = gpu.new_stream()?;
    let mut frames = Vec::new();
    for path in pictures()? {
        let frame = Frame::load(&path)?;
        frames.push(images::fit(&frame, 1280, 720));
        frames.push(frame);
    }
    println!(
        "\nPre-processing on the GPU (one kernel) against the CPU, {} pictures (tests/data as they are and fitted to 1280x720)\n",
        frames.len()
    );
    println!("| model | input | fit | largest difference (input units) | in pixel levels | CPU ms at 1280x720 | GPU ms at 1280x720 (kernel) |");
    println!("|---|---|---|---:|---:|---:|---:|");
    let mut whole = Vec::new();
    for entry in &catalog.entries {
        // I3D's input is a clip, not one picture: its pre-processing stays on the CPU.
        let Ok(spec) = InputSpec::of(entry) else {
            continue;
        };
        if !catalog.path_of(entry).is_file() {
            println!("| {} | (model file not present) | | | | | |", entry.name);
            continue;
        }
        let (mut units, mut levels) = (0f32, 0f32);
        for frame in &frames {
            let (u, l) = difference(&spec, gpu, &stream, frame)?;
            units = units.max(u);
            levels = levels.max(l);
        }
        let frame = &frames[0];
        let cpu_ms = timed(iterations, || {
            spec.tensor(frame);
            Ok(())
        })?;
        let mut out = unsafe { stream.alloc::<u32>(spec.shape().iter().product()) }?;
        let on_gpu = frame.on_gpu(gpu)?;
        let gpu_ms = timed(iterations, || {
            let (address, _written) = out.device_ptr_mut(&stream);
            spec.fill_on_gpu(gpu, &on_gpu, address, &stream)?;
            Ok(stream.synchronize()?)
        })?;
        println!(
            "| {} | {}x{} {:?} {:?} | {:?} | {units:.2e} | {levels:.3} | {cpu_ms:.3} | {gpu_ms:.3} |",
            entry.name, spec.width, spec.height, spec.layout, spec.dtype, spec.fit
        );
        let input = ModelInput {
            name: entry.input.clone(),
            shape: spec.shape(),
            dtype: spec.dtype,
            outputs: entry.outputs.clone(),
            io: Io::Frames,
        };
        let path = catalog.path_of(entry);
        let mut engine = (loaders.measured)(&path, &input)?;
        let (device, host) = end_to_end(&spec, &mut *engine, frame, iterations)?;
        // What a graph's replays give is held against this.
        let plain = spec.run(&mut *engine, frame)?;
        drop(engine);
        let graph = loaders.graphs.map(|loader| {
            let mut engine = loader(&path, &input)?;
            let (graph, _) = end_to_end(&spec, &mut *engine, frame, iterations)?;
            let outputs = spec.run(&mut *engine, frame)?;
            Ok::<_, anyhow::Error>((graph, largest_difference(&outputs, &plain)))
        });
        whole.push((entry.name.as_str(), device, host, graph));
    }
    println!("\nFrom a 1280x720 frame to the outputs on the host (median ms)\n");
    println!("| model | frame on the GPU: upload, kernel, inference | host tensor: CPU pre-processing, copy up, inference | ratio | frame on the GPU, as a CUDA graph | its outputs against no graph (largest difference) |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, device, host, graph) in whole {
        let graph = match graph {
            None => "| |".to_owned(),
            Some(Ok((ms, difference))) => format!("{ms:.3} | {difference:.2e} |"),
            Some(Err(e)) => format!("n/a ({e:#}) | |"),
        };
        println!(
            "| {name} | {device:.3} | {host:.3} | {:.2}x | {graph}",
            device / host
        );
    }
    Ok(())
}

/// The largest difference between two runs' outputs, over all of them.
fn largest_difference(a: &[Tensor], b: &[Tensor]) -> f32 {
    a.iter()
        .zip(b)
        .flat_map(|(a, b)| {
            a.as_f32()
                .iter()
                .zip(b.as_f32().iter())
                .map(|(x, y)| (x - y).abs())
                .collect::<Vec<_>>()
        })
        .fold(0.0, f32::max)
}

/// Milliseconds from a new frame to the outputs: (through the GPU, through a host tensor).
fn end_to_end(
    spec: &InputSpec,
    engine: &mut dyn Engine,
    frame: &Frame,
    iterations: usize,
) -> anyhow::Result<(f64, f64)> {
    anyhow::ensure!(
        engine.placement().input_on_gpu,
        "the engine takes no input on the GPU"
    );
    // A fresh frame each run (a clone has no GPU copy): the upload is part of the time.
    let mut copies = vec![frame.clone(); iterations + 1].into_iter();
    let device = timed(iterations, || {
        let copy = copies.next().expect("one a run");
        spec.run(engine, &copy)?;
        Ok(())
    })?;
    let host = timed(iterations, || {
        engine.run(&spec.tensor(frame))?;
        Ok(())
    })?;
    Ok((device, host))
}

/// The largest difference between the kernel's input and the CPU's for `frame`: in the
/// model's units, and in pixel levels (times the normalisation's std).
fn difference(
    spec: &InputSpec,
    gpu: &'static Gpu,
    stream: &Arc<CudaStream>,
    frame: &Frame,
) -> anyhow::Result<(f32, f32)> {
    let cpu = spec.tensor(frame);
    // Both types are 4 bytes: read back as bits, then as the model's type.
    // SAFETY: written in full by the kernel before it is read.
    let mut out = unsafe { stream.alloc::<u32>(cpu.shape.iter().product()) }?;
    {
        let (address, _written) = out.device_ptr_mut(stream);
        let on_gpu = frame.on_gpu(gpu)?;
        spec.fill_on_gpu(gpu, &on_gpu, address, stream)?;
    }
    let bits = stream.clone_dtoh(&out)?;
    let gpu_values: Vec<f32> = match spec.dtype {
        DType::F32 => bits.iter().map(|&b| f32::from_bits(b)).collect(),
        DType::I32 => bits.iter().map(|&b| b as i32 as f32).collect(),
    };
    let channel = |i: usize| match spec.layout {
        crate::vision::preprocess::Layout::Nchw => i / (spec.width * spec.height) as usize,
        crate::vision::preprocess::Layout::Nhwc => i % 3,
    };
    let scale = |i: usize| match spec.dtype {
        DType::F32 => spec.std[channel(i)],
        DType::I32 => 1.0,
    };
    Ok(cpu
        .as_f32()
        .iter()
        .zip(&gpu_values)
        .enumerate()
        .map(|(i, (c, g))| ((c - g).abs(), (c - g).abs() * scale(i)))
        .fold((0f32, 0f32), |(u, l), (du, dl)| (u.max(du), l.max(dl))))
}

/// The median milliseconds of `work` over `iterations` runs after one unmeasured run.
/// The test pictures (tests/data/*.jpg), from the checkout bench runs in.
fn pictures() -> anyhow::Result<Vec<PathBuf>> {
    let mut pictures: Vec<PathBuf> = std::fs::read_dir("tests/data")
        .map_err(|e| anyhow::anyhow!("tests/data (run bench from the checkout): {e}"))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|x| x == "jpg"))
        .collect();
    pictures.sort();
    Ok(pictures)
}
