//! Image properties JSON (`openstack image show` output too): both readings,
//! strict and cursive's, end in a value or an error, never a panic.
#![no_main]

use imgseal::cursive_compat;
use imgseal::glance::RawProperties;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(raw) = RawProperties::from_json(text, "fuzz") {
        if let Ok(sig) = raw.check("fuzz") {
            assert!(!sig.signature.is_empty());
        }
        let _ = cursive_compat::check_properties(&raw);
    }
    let _ = cursive_compat::python_b64decode(data);
});
