//! Gateway credentials kept in memory (Kubernetes secrets by name), for the tests that
//! build gateways with `credentialName`s.

use std::collections::HashMap;

use mesh_tls::{Credential, CredentialLookup, TlsError};

/// Credentials by name; a name not held is an error, as a missing secret.
#[derive(Debug, Default)]
pub struct Secrets(pub HashMap<String, Credential>);

impl CredentialLookup for Secrets {
    fn lookup(&self, name: &str) -> Result<Credential, TlsError> {
        self.0
            .get(name)
            .cloned()
            .ok_or_else(|| TlsError::Config(format!("no secret {name}")))
    }
}
