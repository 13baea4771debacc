//! Nova's documentation example chain (Root CA → Intermediate A → Intermediate
//! B → client), built with `openssl ca` and the docs' ca.conf, and a
//! key-manager directory holding the CA certificates by the docs' uuids.
//! Shared by tests/docs_example.rs and tests/anchors.rs.

use std::path::Path;
use std::process::Command;

pub const CA_CONF: &str = "[ req ]
prompt = no
distinguished_name = dn-param
x509_extensions = ca_cert_extensions

[ ca ]
default_ca = ca_default

[ dn-param ]
C = US
CN = Root CA

[ ca_cert_extensions ]
keyUsage = keyCertSign, digitalSignature
basicConstraints = CA:TRUE, pathlen:2

[ ca_default ]
new_certs_dir = . # Location for new certs after signing
database = ./index.txt # Database index file
serial = ./serial.txt # The current serial number
default_days = 1000
default_md = sha256
policy = signing_policy
email_in_dn = no

[ intermediate_cert_extensions ]
keyUsage = keyCertSign, digitalSignature
basicConstraints = CA:TRUE, pathlen:1

[client_cert_extensions]
keyUsage = keyCertSign, digitalSignature
basicConstraints = CA:FALSE

[ signing_policy ]
countryName = optional
stateOrProvinceName = optional
localityName = optional
organizationName = optional
organizationalUnitName = optional
commonName = supplied
emailAddress = optional
";

// The docs' uuids from Barbican.
pub const CA: &str = "8fbcce5d-d646-4295-ba8a-269fc9451eeb";
pub const INT_A: &str = "0b5d2c72-12cc-4ba6-a8d7-3ff5cc1d8cb8";
pub const INT_B: &str = "674736e3-f25c-405c-8362-bbf991e0ce0a";
pub const CLIENT: &str = "125e6199-2de4-46e3-b091-8e2401ef0d63";

pub fn sh(dir: &Path, args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The docs' chain, in `dir`, and a key-manager directory `dir/km` holding it by uuid.
pub fn build_chain(dir: &Path) {
    std::fs::write(dir.join("ca.conf"), CA_CONF).unwrap();
    std::fs::write(dir.join("index.txt"), "").unwrap();
    std::fs::write(dir.join("serial.txt"), "01\n").unwrap();
    sh(
        dir,
        &[
            "openssl",
            "req",
            "-x509",
            "-nodes",
            "-newkey",
            "rsa:2048",
            "-config",
            "ca.conf",
            "-keyout",
            "key_ca.pem",
            "-out",
            "cert_ca.pem",
        ],
    );
    for (name, cn) in [
        ("intermediate_a", "First Intermediate Certificate"),
        ("intermediate_b", "Second Intermediate Certificate"),
    ] {
        sh(
            dir,
            &[
                "openssl",
                "req",
                "-nodes",
                "-newkey",
                "rsa:2048",
                "-subj",
                &format!("/CN={cn}"),
                "-keyout",
                &format!("key_{name}.pem"),
                "-out",
                &format!("cert_{name}.csr"),
            ],
        );
    }
    sh(
        dir,
        &[
            "openssl",
            "ca",
            "-batch",
            "-config",
            "ca.conf",
            "-extensions",
            "intermediate_cert_extensions",
            "-cert",
            "cert_ca.pem",
            "-keyfile",
            "key_ca.pem",
            "-out",
            "cert_intermediate_a.pem",
            "-infiles",
            "cert_intermediate_a.csr",
        ],
    );
    sh(
        dir,
        &[
            "openssl",
            "ca",
            "-batch",
            "-config",
            "ca.conf",
            "-extensions",
            "intermediate_cert_extensions",
            "-cert",
            "cert_intermediate_a.pem",
            "-keyfile",
            "key_intermediate_a.pem",
            "-out",
            "cert_intermediate_b.pem",
            "-infiles",
            "cert_intermediate_b.csr",
        ],
    );
    let km = dir.join("km");
    std::fs::create_dir_all(&km).unwrap();
    for (file, id) in [
        ("cert_ca.pem", CA),
        ("cert_intermediate_a.pem", INT_A),
        ("cert_intermediate_b.pem", INT_B),
    ] {
        std::fs::copy(dir.join(file), km.join(format!("{id}.pem"))).unwrap();
    }
}

/// Intermediate B issues the client certificate from `dir/cert_client.csr`
/// and the key manager gets it under the docs' client uuid.
pub fn issue_client(dir: &Path) {
    sh(
        dir,
        &[
            "openssl",
            "ca",
            "-batch",
            "-config",
            "ca.conf",
            "-extensions",
            "client_cert_extensions",
            "-cert",
            "cert_intermediate_b.pem",
            "-keyfile",
            "key_intermediate_b.pem",
            "-out",
            "cert_client.pem",
            "-infiles",
            "cert_client.csr",
        ],
    );
    std::fs::copy(
        dir.join("cert_client.pem"),
        dir.join("km").join(format!("{CLIENT}.pem")),
    )
    .unwrap();
}

/// The docs' signed image: the chain in `<work>/docs`, the client key and its
/// certificate made with openssl, the image signed with `openssl dgst -sha256
/// -sign key_client.pem -sigopt rsa_padding_mode:pss`, and its properties.
/// Returns (chain directory, properties file, image).
pub fn docs_signed_with_openssl(
    env: &super::Env,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let dir = env.path("docs");
    std::fs::create_dir(&dir).unwrap();
    build_chain(&dir);
    sh(
        &dir,
        &[
            "openssl",
            "req",
            "-nodes",
            "-newkey",
            "rsa:2048",
            "-subj",
            "/CN=Client Certificate",
            "-keyout",
            "key_client.pem",
            "-out",
            "cert_client.csr",
        ],
    );
    issue_client(&dir);
    let image = env.image("cirros.tar.gz", 434_333);
    let sig = dir.join("cirros.self_signed.signature");
    sh(
        &dir,
        &[
            "openssl",
            "dgst",
            "-sha256",
            "-sign",
            "key_client.pem",
            "-sigopt",
            "rsa_padding_mode:pss",
            "-out",
            sig.to_str().unwrap(),
            image.to_str().unwrap(),
        ],
    );
    let props = super::write_props(
        env,
        "props.json",
        &serde_json::json!({
            "img_signature": super::encode_b64(&std::fs::read(&sig).unwrap()),
            "img_signature_certificate_uuid": CLIENT,
            "img_signature_hash_method": "SHA-256",
            "img_signature_key_type": "RSA-PSS",
        }),
    );
    (dir, props, image)
}
