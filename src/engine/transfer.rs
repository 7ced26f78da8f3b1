//! Every host↔device crossing of a decoding step goes through here: a step stages its index
//! arrays and sampling settings into one [`Upload`] (sent as a single `i64` copy) and reads its
//! sampled rows back with one [`download_f32`]. Both are counted per thread ([`counts`]), so a
//! test can assert that a step moves exactly one upload and one download: no `.item()`, no
//! per-sequence copies, no `Vec` round trips. On CUDA every other transfer would be a stall of
//! the launch queue; on the CPU they are cheap, which is why they have to be counted, not timed.

use std::cell::Cell;

use tch::{Device, Kind, Tensor};

/// Transfers made so far by this thread.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransferCounts {
    /// Host → device copies.
    pub uploads: u64,
    /// Device → host copies (each one waits for the device).
    pub downloads: u64,
}

impl std::ops::Sub for TransferCounts {
    type Output = Self;

    fn sub(self, earlier: Self) -> Self {
        Self {
            uploads: self.uploads - earlier.uploads,
            downloads: self.downloads - earlier.downloads,
        }
    }
}

thread_local! {
    static COUNTS: Cell<TransferCounts> = const {
        Cell::new(TransferCounts { uploads: 0, downloads: 0 })
    };
}

/// The transfers this thread has made.
pub fn counts() -> TransferCounts {
    COUNTS.with(Cell::get)
}

fn bump(update: impl FnOnce(&mut TransferCounts)) {
    COUNTS.with(|c| {
        let mut counts = c.get();
        update(&mut counts);
        c.set(counts);
    });
}

/// Where one staged array lies in an [`Upload`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    start: i64,
    len: i64,
    float: bool,
}

impl Segment {
    /// First element's offset in its upload.
    pub fn start(&self) -> i64 {
        self.start
    }

    /// Offset just past its last element.
    pub fn end(&self) -> i64 {
        self.start + self.len
    }
}

/// Arrays staged on the host for one copy to the device. `f32` values travel as their bit
/// patterns inside the `i64` buffer and are reinterpreted on the device, bit for bit.
#[derive(Debug, Default)]
pub struct Upload {
    values: Vec<i64>,
}

impl Upload {
    /// Stages integers.
    pub fn push_i64(&mut self, values: &[i64]) -> Segment {
        let start = self.values.len() as i64;
        self.values.extend_from_slice(values);
        Segment {
            start,
            len: values.len() as i64,
            float: false,
        }
    }

    /// Stages floats (exactly: their bits, sign-extended so they survive the `i64 → i32` cast).
    pub fn push_f32(&mut self, values: &[f32]) -> Segment {
        let start = self.values.len() as i64;
        self.values
            .extend(values.iter().map(|v| i64::from(v.to_bits() as i32)));
        Segment {
            start,
            len: values.len() as i64,
            float: true,
        }
    }

    /// Copies everything staged to `device` at once. To a GPU the copy goes from pinned
    /// memory and does not block: the host goes on launching the step's kernels, which the
    /// device runs after the copy (libtorch's pinned-memory cache keeps the buffer until then).
    pub fn send(self, device: Device) -> Uploaded {
        bump(|c| c.uploads += 1);
        let host = Tensor::from_slice(&self.values);
        Uploaded(match device {
            Device::Cpu => host,
            _ => pinned(&host).to_device_(device, Kind::Int64, true, false),
        })
    }
}

/// `host` in page-locked memory (so a copy from it need not block), or `host` itself if
/// pinning fails.
fn pinned(host: &Tensor) -> Tensor {
    #[allow(unsafe_code)]
    mod ffi {
        extern "C" {
            pub fn t3d_pin_memory(t: *const torch_sys::C_tensor) -> *mut torch_sys::C_tensor;
        }
    }
    // SAFETY: the shim reads the tensor behind `as_ptr` and returns a new one it hands over
    // (or null), which `from_ptr` takes ownership of.
    #[allow(unsafe_code)]
    unsafe {
        let copy = ffi::t3d_pin_memory(host.as_ptr());
        if copy.is_null() {
            host.shallow_clone()
        } else {
            Tensor::from_ptr(copy)
        }
    }
}

/// An [`Upload`] on the device.
#[derive(Debug)]
pub struct Uploaded(Tensor);

impl Uploaded {
    /// Arrays already on the device, laid out as an upload was (a graph's input buffer).
    pub fn wrap(values: Tensor) -> Self {
        Self(values)
    }

    /// The first `len` values.
    pub fn prefix(&self, len: i64) -> Tensor {
        self.0.narrow(0, 0, len)
    }

    /// The array staged as `segment`: `Int64`, or `Float` for a [`Upload::push_f32`] segment.
    pub fn get(&self, segment: Segment) -> Tensor {
        let part = self.0.narrow(0, segment.start, segment.len);
        if segment.float {
            part.to_kind(Kind::Int).view_dtype(Kind::Float)
        } else {
            part
        }
    }
}

/// Copies `from` into `into`, both on the same device (a graph's input buffer refilled from the
/// step's upload): no host↔device crossing, and not counted as one.
pub fn copy_on_device(into: &Tensor, from: &Tensor) {
    debug_assert_eq!(into.device(), from.device());
    into.shallow_clone().copy_(from);
}

/// A tensor's values as `f32` on the host: the one device → host copy of a step.
pub fn download_f32(tensor: &Tensor) -> Vec<f32> {
    bump(|c| c.downloads += 1);
    let host = tensor
        .to_device(Device::Cpu)
        .to_kind(Kind::Float)
        .flatten(0, -1);
    // A 1-D float tensor on the CPU always converts; a failure would be libtorch's, and the
    // caller's forward guard reports it.
    Vec::<f32>::try_from(host).expect("a 1-D f32 tensor converts to Vec<f32>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_and_integers_share_one_copy_bit_for_bit() {
        let before = counts();
        let mut upload = Upload::default();
        let ints = upload.push_i64(&[3, -1, i64::MAX]);
        let floats = upload.push_f32(&[0.5, -2.25, f32::MIN_POSITIVE, 1e30, -0.0]);
        let empty = upload.push_f32(&[]);
        let sent = upload.send(Device::Cpu);
        assert_eq!(
            Vec::<i64>::try_from(sent.get(ints)).unwrap(),
            vec![3, -1, i64::MAX]
        );
        let back = Vec::<f32>::try_from(sent.get(floats)).unwrap();
        let bits: Vec<u32> = back.iter().map(|v| v.to_bits()).collect();
        let want: Vec<u32> = [0.5f32, -2.25, f32::MIN_POSITIVE, 1e30, -0.0]
            .iter()
            .map(|v| v.to_bits())
            .collect();
        assert_eq!(bits, want);
        assert_eq!(sent.get(empty).numel(), 0);
        let after = download_f32(&sent.get(floats));
        assert_eq!(after[1], -2.25);
        assert_eq!(
            counts() - before,
            TransferCounts {
                uploads: 1,
                downloads: 1
            }
        );
    }
}
