//! A frame's pixels on the GPU: put there by the first model that wants them, once per
//! frame, and read in place by every other model's pre-processing. On a discrete GPU they are
//! copied into device memory (through a pinned buffer); on an integrated one (a Jetson, whose
//! GPU shares the memory) they are written into pinned memory mapped into the GPU's address
//! space, which the kernels read where it is, with no copy.

use super::Gpu;
use cudarc::driver::{CudaEvent, CudaSlice, CudaStream, DevicePtr, PinnedHostSlice, SyncOnDrop};
use std::sync::{Arc, Mutex, OnceLock};

/// The pixels (RGB, 8 bits a channel, rows packed) where the GPU reads them.
pub struct OnGpu {
    /// The GPU it is on.
    pub gpu: &'static Gpu,
    pixels: Pixels,
    pub width: u32,
    pub height: u32,
}

enum Pixels {
    /// In device memory; `uploaded` is recorded after the copy: a model's stream waits on
    /// it, not on the whole device.
    Copied {
        slice: CudaSlice<u8>,
        uploaded: CudaEvent,
    },
    /// In mapped host memory, given back to the GPU's pool when the frame drops.
    Mapped(Lent),
}

impl OnGpu {
    /// The pixels' device address, for work queued on `stream` (which waits for the upload
    /// first). Drop the guard after that work is queued: until the work is done, the memory
    /// is neither freed nor written again.
    pub fn read_on<'a>(&'a self, stream: &'a CudaStream) -> anyhow::Result<(u64, Reading<'a>)> {
        match &self.pixels {
            Pixels::Copied { slice, uploaded } => {
                stream.wait(uploaded)?;
                let (address, read) = slice.device_ptr(stream);
                Ok((address, Reading::Copied { _read: read }))
            }
            Pixels::Mapped(lent) => {
                let buffer = lent.0.as_ref().expect("lent until dropped");
                Ok((buffer.address, Reading::Mapped { buffer, stream }))
            }
        }
    }
}

/// A read queued on a stream, recorded when this drops (see `OnGpu::read_on`).
pub enum Reading<'a> {
    Copied {
        _read: SyncOnDrop<'a>,
    },
    Mapped {
        buffer: &'a MappedBuffer,
        stream: &'a CudaStream,
    },
}

impl Drop for Reading<'_> {
    fn drop(&mut self) {
        if let Reading::Mapped { buffer, stream } = self {
            match stream.record_event(None) {
                Ok(event) => buffer.lock_readers().push(event),
                // Without the event the next writer cannot wait for this read: wait now.
                Err(_) => {
                    let _ = stream.synchronize();
                }
            }
        }
    }
}

/// Pinned host memory mapped into the GPU's address space, holding one frame.
pub struct MappedBuffer {
    host: PinnedHostSlice<u8>,
    address: u64,
    /// An event on each stream that queued a read since the last write.
    readers: Mutex<Vec<CudaEvent>>,
}

impl MappedBuffer {
    fn lock_readers(&self) -> std::sync::MutexGuard<'_, Vec<CudaEvent>> {
        self.readers.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A buffer lent to one frame out of the GPU's pool.
struct Lent(Option<MappedBuffer>, &'static Gpu);

impl Drop for Lent {
    fn drop(&mut self) {
        if let Some(buffer) = self.0.take() {
            self.1.lock_mapped().push(buffer);
        }
    }
}

/// The copy a `Frame` carries, made at the first request. A clone starts without one (it
/// may be changed before it is used), and copies never make frames unequal.
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
    /// The pixels on `gpu`, put there now if no model asked before (models running side by
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
                let pixels = match gpu.mapped_frames {
                    true => map(gpu, rgb).map(|buffer| Pixels::Mapped(Lent(Some(buffer), gpu))),
                    false => upload(gpu, rgb).map_err(anyhow::Error::from),
                };
                pixels
                    .map(|pixels| {
                        Arc::new(OnGpu {
                            gpu,
                            pixels,
                            width,
                            height,
                        })
                    })
                    .map_err(|e| format!("cannot put the frame on the GPU: {e}"))
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

fn upload(gpu: &Gpu, rgb: &[u8]) -> Result<Pixels, cudarc::driver::DriverError> {
    let mut staging = gpu.staging.lock().unwrap_or_else(|p| p.into_inner());
    if staging.as_ref().is_none_or(|s| s.len() != rgb.len()) {
        // SAFETY: written in full below before any read.
        *staging = Some(unsafe { gpu.context.alloc_pinned::<u8>(rgb.len()) }?);
    }
    let pinned = staging.as_mut().expect("allocated above");
    // Waits until the previous frame's copy out of the buffer is done.
    pinned.as_mut_slice()?.copy_from_slice(rgb);
    // SAFETY: filled by the copy queued right after, on the same stream.
    let mut slice = unsafe { gpu.upload.alloc::<u8>(rgb.len()) }?;
    gpu.upload.memcpy_htod(pinned, &mut slice)?;
    let uploaded = gpu.upload.record_event(None)?;
    Ok(Pixels::Copied { slice, uploaded })
}

/// `rgb` written into a mapped buffer from the GPU's pool (a new one when none is free),
/// once every read queued on the buffer's last frame is done.
fn map(gpu: &Gpu, rgb: &[u8]) -> anyhow::Result<MappedBuffer> {
    let free = {
        let mut pool = gpu.lock_mapped();
        let found = pool.iter().position(|b| b.host.len() == rgb.len());
        found.map(|i| pool.swap_remove(i))
    };
    let mut buffer = match free {
        Some(buffer) => buffer,
        None => {
            // SAFETY: written in full below before any read.
            let mut host = unsafe {
                gpu.context.alloc_pinned_with_flags::<u8>(
                    rgb.len(),
                    cudarc::driver::sys::CU_MEMHOSTALLOC_DEVICEMAP,
                )
            }?;
            let mut address = 0;
            // SAFETY: `host` is pinned memory allocated with DEVICEMAP in this context.
            unsafe {
                cudarc::driver::sys::cuMemHostGetDevicePointer_v2(
                    &mut address,
                    host.as_mut_ptr()? as *mut std::ffi::c_void,
                    0,
                )
            }
            .result()?;
            MappedBuffer {
                host,
                address,
                readers: Mutex::new(Vec::new()),
            }
        }
    };
    for read in buffer.lock_readers().drain(..) {
        read.synchronize()?;
    }
    buffer.host.as_mut_slice()?.copy_from_slice(rgb);
    Ok(buffer)
}
