//! DSA parameter inheritance (RFC 5280 §6.1.4 (e)): a DSA subject public key
//! may omit its domain parameters, which are then those of the issuing key.
//!
//! OpenSSL 3 cannot decode such a key, and its verifier stops on any chain
//! holding one, before any callback can help (`X509_get_pubkey_parameters`
//! fails). So the strict policy hands OpenSSL a *twin* of each such
//! certificate: the same certificate with the inherited parameters written
//! into its subjectPublicKeyInfo. Every RFC 5280 check then runs on fields
//! identical to the original's, the twin's key verifies the signatures it
//! made (certificates and CRLs) with the right parameters, and only the twin's
//! own signature no longer matches its altered to-be-signed bytes. That one
//! check is made here on the original instead, and `openssl_hooks` accepts the
//! twin's signature failure exactly when the original's signature holds.

use std::collections::HashMap;

use const_oid::db::rfc5912::ID_DSA;
use der::asn1::{Any, Uint};
use der::{Decode, Encode, Sequence, Tagged};
use openssl::x509::{X509, X509Ref};

/// `Dss-Parms` (RFC 3279 §2.3.2).
#[derive(Clone, Sequence)]
struct DssParms {
    p: Uint,
    q: Uint,
    g: Uint,
}

/// What path processing needs from one subjectPublicKeyInfo.
enum KeyShape {
    DsaWithParameters(DssParms),
    DsaWithoutParameters,
    /// Not DSA, or not a readable DSA key: nothing to inherit from it.
    Other,
}

fn shape(cert: &x509_cert::Certificate) -> KeyShape {
    let spki = &cert.tbs_certificate.subject_public_key_info;
    if spki.algorithm.oid != ID_DSA {
        return KeyShape::Other;
    }
    // Absent and NULL parameters both mean "inherited".
    match spki
        .algorithm
        .parameters
        .as_ref()
        .filter(|any| any.tag() != der::Tag::Null)
    {
        Some(any) => match any.decode_as::<DssParms>() {
            Ok(p) => KeyShape::DsaWithParameters(p),
            Err(_) => KeyShape::Other,
        },
        None => KeyShape::DsaWithoutParameters,
    }
}

fn parse(cert: &X509Ref) -> Option<x509_cert::Certificate> {
    x509_cert::Certificate::from_der(&cert.to_der().ok()?).ok()
}

/// Whether the certificate's key is DSA without domain parameters, which
/// only the path above it completes.
pub(super) fn lacks_dsa_parameters(cert: &X509Ref) -> bool {
    parse(cert).is_some_and(|c| matches!(shape(&c), KeyShape::DsaWithoutParameters))
}

/// The twins made for one path, both ways.
#[derive(Default, Clone)]
pub(super) struct Twins {
    /// Original DER → twin.
    twin_of: HashMap<Vec<u8>, X509>,
    /// Twin DER → original.
    original_of: HashMap<Vec<u8>, X509>,
}

impl Twins {
    /// Walks a path from the anchor down (`top_down[0]` is the anchor),
    /// carrying working_public_key_parameters as §6.1.4 (e) describes, and
    /// makes a twin of every certificate that inherits them. A parameterless
    /// DSA key under a non-DSA issuer gets no twin: OpenSSL then refuses it,
    /// as it must.
    pub(super) fn along(top_down: &[&X509]) -> Self {
        let mut twins = Twins::default();
        let mut working: Option<DssParms> = None;
        for cert in top_down {
            let Some(parsed) = parse(cert) else {
                working = None;
                continue;
            };
            match shape(&parsed) {
                KeyShape::DsaWithParameters(params) => working = Some(params),
                KeyShape::DsaWithoutParameters => {
                    let Some(params) = &working else { continue };
                    if let (Some(twin), Ok(original)) = (twin(parsed, params), cert.to_der())
                        && let Ok(twin_der) = twin.to_der()
                    {
                        twins.original_of.insert(twin_der, (*cert).clone());
                        twins.twin_of.insert(original, twin);
                    }
                }
                KeyShape::Other => working = None,
            }
        }
        twins
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.twin_of.is_empty()
    }

    /// The certificate to hand OpenSSL in place of `cert`.
    pub(super) fn for_openssl<'a>(&'a self, cert: &'a X509) -> &'a X509 {
        cert.to_der()
            .ok()
            .and_then(|der| self.twin_of.get(&der))
            .unwrap_or(cert)
    }

    /// The original of a twin; `None` for any other certificate.
    pub(super) fn original_of(&self, cert_der: &[u8]) -> Option<&X509> {
        self.original_of.get(cert_der)
    }
}

/// The certificate with `params` written into its subjectPublicKeyInfo; the
/// signature is left as it was (it no longer matches, see the module notes).
fn twin(mut cert: x509_cert::Certificate, params: &DssParms) -> Option<X509> {
    let any = Any::encode_from(params).ok()?;
    cert.tbs_certificate
        .subject_public_key_info
        .algorithm
        .parameters = Some(any);
    X509::from_der(&cert.to_der().ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkits(name: &str) -> X509 {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/pkits/certs")
            .join(format!("{name}.crt"));
        let der = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("the PKITS data is needed ({}): {e}", path.display()));
        X509::from_der(&der).unwrap()
    }

    #[test]
    fn twins_carry_the_issuing_dsa_keys_parameters() {
        let anchor = pkits("TrustAnchorRootCertificate");
        let dsa_ca = pkits("DSACACert");
        let inherited_ca = pkits("DSAParametersInheritedCACert");
        let ee = pkits("ValidDSAParameterInheritanceTest5EE");
        assert!(inherited_ca.public_key().is_err(), "OpenSSL decodes it now");
        assert!(lacks_dsa_parameters(&inherited_ca));
        assert!(!lacks_dsa_parameters(&dsa_ca));

        let twins = Twins::along(&[&anchor, &dsa_ca, &inherited_ca, &ee]);
        let ca_twin = twins.for_openssl(&inherited_ca);
        let ca_key = ca_twin.public_key().expect("the twin's key decodes");
        // The original EE was signed by that key, and so was the CA's CRL.
        assert!(ee.verify(&ca_key).unwrap());
        let crl = std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/data/pkits/crls/DSAParametersInheritedCACRL.crl"),
        )
        .unwrap();
        let crl = openssl::x509::X509Crl::from_der(&crl).unwrap();
        assert!(crl.verify(&ca_key).unwrap());
        // Same names, serial and extensions; the original's signature is the
        // one DSACA made, and the twin's no longer matches.
        assert_eq!(
            ca_twin.serial_number().to_bn().unwrap(),
            inherited_ca.serial_number().to_bn().unwrap()
        );
        let dsa_key = dsa_ca.public_key().unwrap();
        assert!(inherited_ca.verify(&dsa_key).unwrap());
        assert!(!ca_twin.verify(&dsa_key).unwrap_or(false));
        assert_eq!(
            twins
                .original_of(&ca_twin.to_der().unwrap())
                .unwrap()
                .to_der()
                .unwrap(),
            inherited_ca.to_der().unwrap()
        );
        // The EE inherits through the CA (working parameters stay DSACA's).
        assert!(twins.for_openssl(&ee).public_key().is_ok());
        assert!(std::ptr::eq(twins.for_openssl(&dsa_ca), &dsa_ca));

        // Under an RSA issuer there is nothing to inherit.
        assert!(Twins::along(&[&anchor, &inherited_ca, &ee]).is_empty());
    }
}
