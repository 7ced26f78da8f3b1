//! The gRPC client of `t3d.v1.Generation`, from the server's own `proto/` (protoc vendored).

fn main() {
    println!("cargo:rerun-if-changed=../proto");
    let protoc = protoc_bin_vendored::protoc_bin_path().expect("a vendored protoc for this host");
    std::env::set_var("PROTOC", protoc);
    tonic_prost_build::configure()
        .build_server(false)
        .compile_protos(&["../proto/t3d/v1/generation.proto"], &["../proto"])
        .expect("../proto/t3d/v1/generation.proto compiles");
}
