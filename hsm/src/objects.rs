//! Certificate objects (`CKO_CERTIFICATE`, `CKC_X_509`) kept in the token.

use cryptoki::object::{Attribute, AttributeType, CertificateType, ObjectClass, ObjectHandle};

use crate::error::Result;
use crate::module::Token;

/// An X.509 certificate as stored in the token. The device crate does not
/// parse it: `subject`, `issuer` and `serial` are DER given by the caller.
#[derive(Debug, Clone)]
pub struct CertificateObject {
    pub handle: Option<ObjectHandle>,
    pub label: String,
    pub id: Vec<u8>,
    pub value: Vec<u8>,
}

/// What the token needs to index a certificate.
pub struct NewCertificate<'a> {
    pub label: &'a str,
    pub id: &'a [u8],
    pub subject_der: &'a [u8],
    pub issuer_der: &'a [u8],
    pub serial_der: &'a [u8],
    pub value_der: &'a [u8],
}

impl Token {
    /// Stores a public, persistent X.509 certificate object.
    pub fn store_certificate(&self, cert: &NewCertificate<'_>) -> Result<ObjectHandle> {
        let template = vec![
            Attribute::Class(ObjectClass::CERTIFICATE),
            Attribute::CertificateType(CertificateType::X_509),
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Label(cert.label.as_bytes().to_vec()),
            Attribute::Id(cert.id.to_vec()),
            Attribute::Subject(cert.subject_der.to_vec()),
            Attribute::Issuer(cert.issuer_der.to_vec()),
            Attribute::SerialNumber(cert.serial_der.to_vec()),
            Attribute::Value(cert.value_der.to_vec()),
        ];
        Ok(self.session.create_object(&template)?)
    }

    /// Certificates whose label is `label` (all certificates when `None`).
    pub fn find_certificates(&self, label: Option<&str>) -> Result<Vec<CertificateObject>> {
        self.find_certificates_where(label, None)
    }

    /// Certificates whose `CKA_ID` is `id` (a key pair's certificate
    /// shares its id, by PKCS#11 convention).
    pub fn find_certificates_with_id(&self, id: &[u8]) -> Result<Vec<CertificateObject>> {
        self.find_certificates_where(None, Some(id))
    }

    fn find_certificates_where(
        &self,
        label: Option<&str>,
        id: Option<&[u8]>,
    ) -> Result<Vec<CertificateObject>> {
        let mut template = vec![
            Attribute::Class(ObjectClass::CERTIFICATE),
            Attribute::CertificateType(CertificateType::X_509),
        ];
        if let Some(label) = label {
            template.push(Attribute::Label(label.as_bytes().to_vec()));
        }
        if let Some(id) = id {
            template.push(Attribute::Id(id.to_vec()));
        }
        let mut out = Vec::new();
        for handle in self.session.find_objects(&template)? {
            let mut cert = CertificateObject {
                handle: Some(handle),
                label: String::new(),
                id: Vec::new(),
                value: Vec::new(),
            };
            for attr in self.session.get_attributes(
                handle,
                &[
                    AttributeType::Label,
                    AttributeType::Id,
                    AttributeType::Value,
                ],
            )? {
                match attr {
                    Attribute::Label(v) => cert.label = String::from_utf8_lossy(&v).into_owned(),
                    Attribute::Id(v) => cert.id = v,
                    Attribute::Value(v) => cert.value = v,
                    _ => {}
                }
            }
            out.push(cert);
        }
        out.sort_by(|a, b| a.label.cmp(&b.label));
        Ok(out)
    }

    pub fn destroy_object(&self, handle: ObjectHandle) -> Result<()> {
        Ok(self.session.destroy_object(handle)?)
    }
}
