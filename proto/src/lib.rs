//! The `count.v1` gRPC API: message types and tonic client/server stubs
//! generated from `proto/count/v1/count.proto`.
//!
//! Layout (modules mirror the protobuf packages, as prost's paths require):
//! - [`count::v1`], re-exported as [`v1`]: the service, messages and `Method`.
//! - [`google::r#type`]: `google.type.Date`, used for days and periods.

/// `google.*` packages the API imports.
pub mod google {
    /// `google.type`: common types from googleapis.
    pub mod r#type {
        #![allow(missing_docs, unreachable_pub)]
        tonic::include_proto!("google.r#type");
    }
}

/// The `count.*` packages.
pub mod count {
    /// The `count.v1` package.
    pub mod v1 {
        #![allow(missing_docs, unreachable_pub, clippy::unwrap_used)]
        tonic::include_proto!("count.v1");
    }
}

pub use count::v1;

/// The encoded `FileDescriptorSet` of the API and its imports, for gRPC
/// server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("count_descriptor");
