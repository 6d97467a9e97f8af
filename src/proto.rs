//! Generated gRPC types and services for `proto/provisionerd.proto`.
#![allow(clippy::all, missing_docs)]
tonic::include_proto!("provisionerd.v1");

mod redact;
