//! A frame's pixels on the GPU: uploaded by the first model that wants them, once per
//! frame, and read in place by every other model's pre-processing.

use super::Gpu;
use cudarc::driver::{CudaEvent, CudaSlice};
use std::sync::{Arc, OnceLock};

/// The pixels (RGB, 8 bits a channel, rows packed) in device memory.
pub struct OnGpu {
    /// The GPU it is on.
    pub gpu: &'static Gpu,
    pub pixels: CudaSlice<u8>,
    pub width: u32,
    pub height: u32,
    /// Recorded after the upload: a model's stream waits on it, not on the whole device.
    pub uploaded: CudaEvent,
}

/// The device copy a `Frame` carries, made at the first request. A clone starts without
/// one (it may be changed before it is used), and copies never make frames unequal.
#[derive(Default)]
pub struct DeviceCopy(OnceLock<Result<Arc<OnGpu>, String>>);

impl Clone for DeviceCopy {
    fn clone(&self) -> Self {
        DeviceCopy::default()
    }
}

impl PartialEq for DeviceCopy {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl DeviceCopy {
    /// The pixels on `gpu`, uploaded now if no model asked before (models running side by
    /// side wait for the one upload).
    pub fn get(
        &self,
        gpu: &'static Gpu,
        width: u32,
        height: u32,
        rgb: &[u8],
    ) -> anyhow::Result<Arc<OnGpu>> {
        self.0
            .get_or_init(|| {
                upload(gpu, rgb)
                    .map(|(pixels, uploaded)| {
                        Arc::new(OnGpu {
                            gpu,
                            pixels,
                            width,
                            height,
                            uploaded,
                        })
                    })
                    .map_err(|e| format!("cannot upload the frame: {e}"))
            })
            .clone()
            .map_err(anyhow::Error::msg)
    }

    /// The copy, if a model made one (and it went up).
    pub fn made(&self) -> Option<Arc<OnGpu>> {
        self.0.get()?.as_ref().ok().cloned()
    }

    /// Drops the copy: the frame's pixels are about to change (overlays are drawn).
    pub fn forget(&mut self) {
        *self = DeviceCopy::default();
    }
}

fn upload(
    gpu: &Gpu,
    rgb: &[u8],
) -> Result<(CudaSlice<u8>, CudaEvent), cudarc::driver::DriverError> {
    let mut staging = gpu.staging.lock().unwrap_or_else(|p| p.into_inner());
    if staging.as_ref().is_none_or(|s| s.len() != rgb.len()) {
        // SAFETY: written in full below before any read.
        *staging = Some(unsafe { gpu.context.alloc_pinned::<u8>(rgb.len()) }?);
    }
    let pinned = staging.as_mut().expect("allocated above");
    // Waits until the previous frame's copy out of the buffer is done.
    pinned.as_mut_slice()?.copy_from_slice(rgb);
    // SAFETY: filled by the copy queued right after, on the same stream.
    let mut pixels = unsafe { gpu.upload.alloc::<u8>(rgb.len()) }?;
    gpu.upload.memcpy_htod(pinned, &mut pixels)?;
    let uploaded = gpu.upload.record_event(None)?;
    Ok((pixels, uploaded))
}
