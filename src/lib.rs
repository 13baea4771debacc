//! imgseal: sign and verify cloud VM images for OpenStack Glance and Nova with
//! keys held in PKCS#11 devices.

pub mod algorithms;
pub mod anchors;
pub mod attestation;
pub mod backend;
pub mod certsource;
pub mod cloud;
pub mod config;
pub mod credential;
pub mod cursive_compat;
pub mod digest;
pub mod disk_format;
pub mod enrollment;
pub mod error;
pub mod fsverity;
pub mod glance;
pub mod home;
pub mod manifest;
pub mod openstack;
pub mod pin;
pub mod public_key;
pub mod sign;
pub mod signature;
pub mod store;
pub mod validate;
pub mod verify;
pub mod x509;

pub use error::{Error, ErrorKind, Result};
