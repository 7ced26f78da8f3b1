//! Build glue: the gRPC code from `proto/` (with `protoc` from the `protoc-bin-vendored` crate,
//! so no system package is needed) and its descriptor set for server reflection; and for
//! libtorch, an rpath to the libtorch that torch-sys built against (so no `LD_LIBRARY_PATH` is
//! needed) plus a forced `libtorch_cuda.so` dependency when it exists (the linker's
//! `--as-needed` would otherwise drop it and CUDA would silently be unavailable); and
//! `src/native/torch_shim.cpp`, what tch does not wrap of libtorch (an ATen op counter, pinned
//! copies, the SDPA backend switch), compiled against the same libtorch headers; and
//! `src/native/cuda_graph.cpp` (CUDA graphs) when that libtorch has CUDA and the CUDA runtime
//! headers are found, which sets the `t3d_cuda_graphs` cfg.

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
    let abi = abi.as_str();
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
    compile_cuda_graph_shim(&root, abi);
}

/// `src/native/cuda_graph.cpp`, when the libtorch has CUDA and the CUDA runtime headers are
/// found (CUDA_HOME, the PyPI wheels' `nvidia/` packages beside torch, /usr/local/cuda).
fn compile_cuda_graph_shim(torch_root: &std::path::Path, abi: &str) {
    println!("cargo::rustc-check-cfg=cfg(t3d_cuda_graphs)");
    println!("cargo:rerun-if-env-changed=CUDA_HOME");
    let lib_dir = torch_root.join("lib");
    if !lib_dir.join("libtorch_cuda.so").exists() {
        return;
    }
    let mut candidates: Vec<PathBuf> = std::env::var("CUDA_HOME")
        .map(|home| vec![PathBuf::from(home).join("include")])
        .unwrap_or_default();
    for package in ["cu13", "cuda_runtime"] {
        candidates.push(torch_root.join("../nvidia").join(package).join("include"));
    }
    candidates.push(PathBuf::from("/usr/local/cuda/include"));
    let Some(cuda_include) = candidates.into_iter().find(|dir| {
        dir.join("cuda_runtime_api.h").exists() && dir.join("crt/host_config.h").exists()
    }) else {
        println!("cargo:warning=CUDA runtime headers not found: built without CUDA graphs");
        return;
    };
    cc::Build::new()
        .cpp(true)
        .file("src/native/cuda_graph.cpp")
        .include(torch_root.join("include"))
        .include(torch_root.join("include/torch/csrc/api/include"))
        .include(cuda_include)
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .define("NDEBUG", None)
        .warnings(false)
        .compile("t3d_cuda_graph");
    println!("cargo:rustc-link-lib=dylib=torch_cuda");
    println!("cargo:rustc-link-lib=dylib=c10_cuda");
    println!("cargo:rustc-cfg=t3d_cuda_graphs");
}
