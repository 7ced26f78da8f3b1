//! Build glue: the gRPC code from `proto/` (with `protoc` from the `protoc-bin-vendored` crate,
//! so no system package is needed) and its descriptor set for server reflection; and for
//! libtorch, an rpath to the libtorch that torch-sys built against (so no `LD_LIBRARY_PATH` is
//! needed) plus a forced `libtorch_cuda.so` dependency when it exists (the linker's
//! `--as-needed` would otherwise drop it and CUDA would silently be unavailable); and
//! `src/native/torch_shim.cpp`, what tch does not wrap of libtorch (an ATen op counter), compiled
//! against the same libtorch headers.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=proto");
    compile_protos();
    link_libtorch();
    compile_torch_shim();
}

fn compile_protos() {
    let protoc = protoc_bin_vendored::protoc_bin_path().expect("a vendored protoc for this host");
    std::env::set_var("PROTOC", protoc);
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("t3d_v1_descriptor.bin"))
        .compile_protos(&["proto/t3d/v1/generation.proto"], &["proto"])
        .expect("proto/t3d/v1/generation.proto compiles");
}

fn link_libtorch() {
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

fn compile_torch_shim() {
    println!("cargo:rerun-if-changed=src/native");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    let Ok(lib_dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    // The container's dependency layer builds stub sources without it (nothing links it there).
    if !std::path::Path::new("src/native/torch_shim.cpp").exists() {
        return;
    }
    let root = PathBuf::from(&lib_dir).join("..");
    // torch-sys's own default: PyPI's wheels use the C++11 ABI.
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_string());
    cc::Build::new()
        .cpp(true)
        .file("src/native/torch_shim.cpp")
        .include(root.join("include"))
        .include(root.join("include/torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .flag("-DGLOG_USE_GLOG_EXPORT")
        // libtorch is built with NDEBUG, and some of its headers lay classes out differently
        // without it (RecordFunction gains a debug-only member).
        .define("NDEBUG", None)
        .warnings(false)
        .compile("t3d_torch_shim");
    println!("cargo:rustc-link-search=native={lib_dir}");
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
}
