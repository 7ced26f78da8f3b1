//! Link-time glue for libtorch: an rpath to the libtorch that torch-sys built against (so no
//! `LD_LIBRARY_PATH` is needed), and a forced `libtorch_cuda.so` dependency when it exists (the
//! linker's `--as-needed` would otherwise drop it and CUDA would silently be unavailable).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let Ok(lib_dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib_dir}");
    if std::path::Path::new(&lib_dir)
        .join("libtorch_cuda.so")
        .exists()
    {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
}
