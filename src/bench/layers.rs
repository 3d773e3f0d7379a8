//! Part of `visiond bench` on a GPU backend, after the pipeline's run with the frame on the
//! GPU: the full-frame overlays (background replacement's backdrop, then segmentation's class
//! colours: `vision::layer`) of the pipeline's own tasks, painted on the GPU and on the CPU
//! over a 1280x720 frame, in each background mode: the largest difference, the PSNR, and the
//! time of each (the GPU's includes bringing the frame down).

use super::timed;
use crate::media::Frame;
use crate::settings::Settings;
use crate::vision::{layer, Task};

pub fn compare(
    tasks: &mut [(&str, Box<dyn Task>)],
    frame: &Frame,
    settings: &Settings,
    iterations: usize,
) -> anyhow::Result<()> {
    println!("\nOverlays (background, then segmentation) on the GPU against the CPU, 1280x720\n");
    println!("| background mode | largest difference (levels) | PSNR dB | CPU ms | GPU ms (kernels and download) |");
    println!("|---|---:|---:|---:|---:|");
    let mut settings = settings.clone();
    for mode in ["black", "color", "blur", "image"] {
        settings.background.mode = mode.into();
        settings.background.color = "#2080c0".into();
        settings.background.image =
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/dog.jpg").into();
        // The models again, so that the frame goes up and the picture is loaded.
        let on_gpu = frame.clone();
        for (section, task) in tasks.iter_mut() {
            task.process(&on_gpu, &settings)
                .map_err(|e| anyhow::anyhow!("{section}: {e:#}"))?;
        }
        anyhow::ensure!(
            on_gpu.gpu_copy().is_some(),
            "no model took the frame on the GPU"
        );
        let layers: Vec<_> = tasks
            .iter()
            .filter_map(|(_, t)| t.layer(&settings))
            .collect();
        anyhow::ensure!(!layers.is_empty(), "no task paints a layer");
        let mut cpu = frame.clone(); // a clone has no GPU copy: painted on the CPU
        let cpu_ms = timed(iterations, || {
            cpu.rgb.copy_from_slice(&frame.rgb);
            layer::paint(&mut cpu, &layers);
            Ok(())
        })?;
        let mut gpu = vec![0; frame.rgb.len()];
        let gpu_ms = timed(iterations, || {
            layer::paint_on_gpu(&on_gpu, &layers, &mut gpu)
        })?;
        let (largest, psnr) = layer::difference(&cpu.rgb, &gpu);
        println!("| {mode} | {largest} | {psnr:.1} | {cpu_ms:.3} | {gpu_ms:.3} |");
    }
    Ok(())
}
