//! OpenStack as its users configure clients: where credentials come from
//! ([`cloud`]), a Keystone v3 session over a small blocking HTTP client
//! ([`session`]), and Barbican's secrets read and stored exactly as Glance and
//! Nova (through castellan) read them ([`barbican`]).

pub mod barbican;
pub mod cloud;
pub mod glance;
pub mod session;
pub mod token_cache;

pub use cloud::{CloudConfig, Secret};
pub use session::{Session, Timeouts};
pub use token_cache::TokenCache;
