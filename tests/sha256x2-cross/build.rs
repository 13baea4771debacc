//! Builds src/fsverity/sha256x2.rs without OpenSSL: its tests then compare
//! with `sha2` only.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(sha256x2_standalone)");
    println!("cargo::rustc-cfg=sha256x2_standalone");
}
