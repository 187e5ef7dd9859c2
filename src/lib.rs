//! `inmesh`: an Istio-compatible service mesh that runs inside the process.
//!
//! This crate re-exports the three library crates so that a service adds one dependency:
//! [`core`] (config model, validation, registry, route table, authorization),
//! [`tls`] (mesh CA, SPIFFE identity, rustls configs) and [`tower`] (Tower layers).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub use mesh_core as core;
pub use mesh_tls as tls;
pub use mesh_tower as tower;
