//! `TPMS_ATTEST` of TPM2_NV_Certify, as `attest verify` reads it from a
//! document: `NvAttestation::parse` (strict), an encode→parse round trip, and
//! `verify_nv_certification` over the same bytes signed with a fixed AK —
//! which must give the parser's result and check the nonce.
#![no_main]

mod support;

use imgseal_tpm::{NvAttestation, verify_nv_certification};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let parsed = NvAttestation::parse(data);
    if let Ok(a) = &parsed {
        let encoded = support::encode_attest(a);
        // TPMI_YES_NO: the parser reads any non-zero `safe` byte as yes.
        let mut normal = data.to_vec();
        let safe_at = 4 + 2 + 2 + a.qualified_signer.len() + 2 + a.extra_data.len() + 8 + 4 + 4;
        normal[safe_at] = a.safe as u8;
        assert_eq!(
            encoded, normal,
            "parse accepts nothing beyond the structure"
        );
        assert_eq!(&NvAttestation::parse(&encoded).unwrap(), a);
    }
    // Signed by the AK, a parsed attestation verifies with its own nonce and
    // with no other. (What does not parse fails the verifier's same parse;
    // signing it too would only slow the target.)
    let Ok(a) = parsed else { return };
    let key = support::ak_key();
    let spki = key.public_key_to_der().unwrap();
    let sig = support::sign_sha256(key, data);
    let v =
        verify_nv_certification(&spki, data, &sig, &a.extra_data).expect("a signed attestation");
    assert_eq!(a, v);
    let mut other = a.extra_data.clone();
    other.push(0);
    assert!(verify_nv_certification(&spki, data, &sig, &other).is_err());
});
