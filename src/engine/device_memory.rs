//! Free and total memory of a CUDA device, read from the CUDA runtime libtorch has already
//! loaded (`cudaMemGetInfo` through `dlopen`; tch exposes no memory query). `None` when no CUDA
//! runtime is loaded or the call fails: the caller then asks for `--kv-cache-memory`.

/// `(free, total)` bytes of CUDA device `index`.
// The crate denies unsafe code; this is its one FFI call, kept to these lines.
#[allow(unsafe_code)]
pub fn cuda_free_and_total(index: usize) -> Option<(usize, usize)> {
    type SetDevice = unsafe extern "C" fn(i32) -> i32;
    type MemGetInfo = unsafe extern "C" fn(*mut usize, *mut usize) -> i32;
    let names = ["libcudart.so.13", "libcudart.so.12", "libcudart.so"];
    // SAFETY: loading the CUDA runtime runs no initialisers beyond the library's own, and the
    // two symbols have exactly these C signatures (CUDA runtime API, stable since CUDA 2.0).
    unsafe {
        let lib = names
            .iter()
            .find_map(|name| libloading::Library::new(name).ok())?;
        let set_device: libloading::Symbol<SetDevice> = lib.get(b"cudaSetDevice\0").ok()?;
        let mem_get_info: libloading::Symbol<MemGetInfo> = lib.get(b"cudaMemGetInfo\0").ok()?;
        if set_device(i32::try_from(index).ok()?) != 0 {
            return None;
        }
        let (mut free, mut total) = (0usize, 0usize);
        (mem_get_info(&mut free, &mut total) == 0).then_some((free, total))
    }
}
