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
    tonic_prost_build::configure().compile_protos(
        &[std::path::PathBuf::from("count/v1/count.proto")],
        &[std::path::PathBuf::from("."), well_known],
    )?;
    println!("cargo:rerun-if-changed=count");
    println!("cargo:rerun-if-changed=google");
    Ok(())
}
