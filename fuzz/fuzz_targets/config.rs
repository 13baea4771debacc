//! imgseal's TOML configuration and nova.conf's [glance] section.
#![no_main]

use std::path::Path;

use imgseal::config::{Config, parse_nova_conf};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = Config::from_toml(text, Path::new("fuzz.toml"));
    let _ = parse_nova_conf(text, Path::new("nova.conf"));
});
