//! Generates the `count.v1` types and tonic stubs.
//!
//! protoc comes from the `protoc-bin-vendored` crate, so building needs no
//! system protobuf compiler and no network beyond crates.io.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let well_known = protoc_bin_vendored::include_path()?;
    // SAFETY: build scripts are single-threaded; nothing else reads the
    // environment while we set it.
    unsafe { std::env::set_var("PROTOC", protoc) };
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        // For gRPC server reflection: grpcurl then needs no .proto files.
        .file_descriptor_set_path(out_dir.join("count_descriptor.bin"))
        .compile_protos(
            &[std::path::PathBuf::from("count/v1/count.proto")],
            &[std::path::PathBuf::from("."), well_known],
        )?;
    println!("cargo:rerun-if-changed=count");
    println!("cargo:rerun-if-changed=google");
    Ok(())
}
