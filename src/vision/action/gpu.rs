//! An action clip on the GPU: each sampled frame is pre-processed by the fit kernel into a
//! ring of T frames that stays on the device, and at each run the clip is gathered from the
//! ring, oldest frame first, straight into the model's input (`gather_clip` in
//! src/gpu/kernels.cu). The frames never come back to the host, and each goes through the
//! pre-processing once, however many clips it is part of.

use super::Clip;
use crate::engine::{Engine, Tensor};
use crate::media::Frame;
use anyhow::Context as _;
use cudarc::driver::{CudaSlice, DevicePtr, DevicePtrMut, PushKernelArg};

/// The device twin of the host window: the last T sampled frames, [T][3][H][W].
#[derive(Default)]
pub struct DeviceWindow {
    /// Allocated at the first frame, on the engine's stream.
    ring: Option<CudaSlice<f32>>,
    /// The slot the next frame goes to; once the ring is full, the oldest frame's.
    next: usize,
    /// Frames in the ring, up to T.
    len: usize,
}

impl DeviceWindow {
    pub fn len(&self) -> usize {
        self.len
    }

    /// Queues `frame`'s pre-processing into the next slot on the engine's stream, ahead of
    /// its next run.
    pub fn push(
        &mut self,
        engine: &mut dyn Engine,
        clip: &Clip,
        frame: &Frame,
    ) -> anyhow::Result<()> {
        let frame_len = clip.frame_len();
        let (frames, slot, ring) = (clip.frames, self.next, &mut self.ring);
        engine
            .queue(&mut |gpu, _input, stream| {
                if ring.is_none() {
                    *ring = Some(gpu.zeros::<f32>(frames * frame_len)?);
                }
                let ring = ring.as_mut().expect("allocated above");
                let (start, _written) = ring.device_ptr_mut(stream);
                let at = start + (slot * frame_len * std::mem::size_of::<f32>()) as u64;
                clip.frame.fill_from(gpu, frame, at, stream)
            })
            .context("the engine takes no input on the GPU")??;
        self.next = (slot + 1) % frames;
        self.len = (self.len + 1).min(frames);
        Ok(())
    }

    /// Runs the engine on the clip of the ring's frames.
    pub fn run(&self, engine: &mut dyn Engine, clip: &Clip) -> anyhow::Result<Vec<Tensor>> {
        let ring = self.ring.as_ref().context("no frame on the GPU yet")?;
        let (width, height) = (clip.frame.width, clip.frame.height);
        let args = [
            width as i32,
            height as i32,
            clip.frames as i32,
            self.next as i32,
        ];
        engine
            .run_filled(&mut |gpu, input, stream| {
                let (ring, _read) = ring.device_ptr(stream);
                let mut launch = stream.launch_builder(&gpu.gather_clip);
                launch.arg(&ring).arg(&input);
                for arg in &args {
                    launch.arg(arg);
                }
                // SAFETY: the ring holds T frames of the clip's frame size and `input` the
                // clip (the engine allocated it from `Clip::shape`); the kernel reads and
                // writes inside them.
                unsafe { launch.launch(crate::gpu::launch_per_pixel(width, height)) }?;
                Ok(())
            })
            .context("the engine takes no input on the GPU")?
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Clip, KINETICS_MEAN, KINETICS_STD};
    use crate::engine::Tensor;
    use std::collections::VecDeque;

    /// The clip the kernel gathers from a ring whose oldest frame is not in slot 0 is the
    /// host path's clip of the same frames in the same order, to the bit.
    #[test]
    fn the_kernel_gathers_the_clip_the_host_stacks() {
        let clip = Clip::new(&[1, 3, 4, 5, 7], KINETICS_MEAN, KINETICS_STD).unwrap();
        let frame_len = clip.frame_len();
        let ring: Vec<f32> = (0..4 * frame_len).map(|i| i as f32 * 0.25 - 3.0).collect();
        let oldest = 2;
        let window: VecDeque<Tensor> = (0..4)
            .map(|t| (oldest + t) % 4)
            .map(|slot| {
                let frame = ring[slot * frame_len..(slot + 1) * frame_len].to_vec();
                Tensor::f32(vec![1, 3, 5, 7], frame)
            })
            .collect();
        let expected = clip.tensor(&window);
        let ring_bytes: Vec<u8> = ring.iter().flat_map(|v| v.to_ne_bytes()).collect();
        let out = crate::gpu::kernels_on_cpu(&["clip", "7", "5", "4", "2"], &ring_bytes);
        assert_eq!(crate::gpu::f32s_from(&out), expected.as_f32().into_owned());
    }
}
