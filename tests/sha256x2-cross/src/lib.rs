//! imgseal's two-way SHA-256 kernel, the very file the main crate builds,
//! with its own tests (`cargo test` here runs them).

#[path = "../../../src/fsverity/sha256x2.rs"]
pub mod sha256x2;
