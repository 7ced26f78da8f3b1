//! Host memory for the KV cache that the OS commits only where it is written: an anonymous
//! mapping reserved without backing (`MAP_NORESERVE`), so a cache laid out for every slot's
//! longest context costs address space, not memory, and reads as zeros until written. Released
//! slots hand their memory back (`MADV_DONTNEED`), so the process holds what running sequences
//! use. libtorch sees the mapping as a tensor it does not own; the pool outlives it.

use tch::{Device, Kind, Tensor};

/// One anonymous mapping.
#[derive(Debug)]
pub struct HostPool {
    address: usize,
    bytes: usize,
}

// The crate denies unsafe code; these are its mmap, madvise and munmap calls and the one tensor
// made over their memory.
#[allow(unsafe_code)]
impl HostPool {
    /// Reserves `bytes` of zero-reading memory.
    pub fn new(bytes: usize) -> std::io::Result<Self> {
        let bytes = bytes.max(1);
        // SAFETY: a fresh anonymous mapping at an address the kernel chooses.
        let address = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if address == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Self {
            address: address as usize,
            bytes,
        })
    }

    /// The whole mapping as a contiguous tensor of `shape` and `kind` (it must fit). The tensor
    /// borrows the memory: it and every view of it must be dropped before the pool.
    pub fn tensor(&self, shape: &[i64], kind: Kind) -> Tensor {
        let numel: i64 = shape.iter().product();
        assert!(numel as usize * kind.elt_size_in_bytes() <= self.bytes);
        let mut strides = vec![1i64; shape.len()];
        for i in (0..shape.len().saturating_sub(1)).rev() {
            strides[i] = strides[i + 1] * shape[i + 1];
        }
        // SAFETY: the memory is mapped, writable and large enough; the cache that owns this
        // pool drops its tensors first (field order).
        unsafe {
            Tensor::from_blob(
                self.address as *const u8,
                shape,
                &strides,
                kind,
                Device::Cpu,
            )
        }
    }

    /// Gives the whole OS pages inside `bytes` at `offset` back to the OS; they read as zeros
    /// afterwards.
    pub fn discard(&self, offset: usize, bytes: usize) {
        const OS_PAGE: usize = 4096;
        let start = (self.address + offset).next_multiple_of(OS_PAGE);
        let end = (self.address + (offset + bytes).min(self.bytes)) / OS_PAGE * OS_PAGE;
        if end > start {
            // SAFETY: a whole-page range inside our own mapping; its contents are not needed.
            let _ = unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED)
            };
        }
    }
}

#[allow(unsafe_code)]
impl Drop for HostPool {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`, once.
        let _ = unsafe { libc::munmap(self.address as *mut libc::c_void, self.bytes) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_reads_zeros_takes_writes_and_zeroes_what_it_discards() {
        let pool = HostPool::new(64 << 20).unwrap();
        let t = pool.tensor(&[16, 1 << 20], Kind::Float);
        assert_eq!(
            t.sum(Kind::Float).double_value(&[]),
            0.0,
            "zeros until written"
        );
        let _ = t.get(3).fill_(2.0);
        assert_eq!(t.sum(Kind::Float).double_value(&[]), 2.0 * (1 << 20) as f64);
        pool.discard(3 << 22, 4 << 20);
        assert_eq!(t.get(3).sum(Kind::Float).double_value(&[]), 0.0);
        drop(t);
    }
}
