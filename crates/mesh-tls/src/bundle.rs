//! The trust bundle: the roots a workload accepts peers' chains up to.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::RootCertStore;

use crate::error::TlsError;
use crate::pki::{self, CertInfo};

/// A set of trusted root certificates (several are allowed: root rotation, trust-domain
/// aliases, a plugged-in CA next to an old self-signed one).
///
/// The rustls [`RootCertStore`] is built once when the bundle is built and shared by `Arc`.
///
/// # Examples
///
/// ```
/// use mesh_tls::{MeshCa, TrustBundle};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let ca = MeshCa::self_signed("cluster.local")?;
/// // Istio's root-cert.pem, parsed back.
/// let pem = ca.trust_bundle().to_pem();
/// let bundle = TrustBundle::from_pem(pem.as_bytes())?;
/// assert_eq!(bundle.certs(), ca.trust_bundle().certs());
/// assert_eq!(bundle.subjects(), ["O=cluster.local, CN=Root CA"]);
/// assert_eq!(bundle.root_store().len(), 1);
///
/// // An empty bundle trusts nothing and is refused.
/// assert!(TrustBundle::new(Vec::new()).is_err());
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct TrustBundle {
    certs: Arc<[CertificateDer<'static>]>,
    store: Arc<RootCertStore>,
    subjects: Arc<[String]>,
    /// Each root's validity (Unix seconds, `notBefore` and `notAfter`), in `store` order.
    validity: Arc<[(u64, u64)]>,
}

impl TrustBundle {
    /// A bundle of the given DER roots. Errors if empty or if a root is unusable as a
    /// trust anchor.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tls::{MeshCa, TrustBundle};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let ca = MeshCa::self_signed("cluster.local")?;
    /// let root = ca.trust_bundle().certs()[0].clone();
    /// // The same root twice is kept once.
    /// let bundle = TrustBundle::new(vec![root.clone(), root])?;
    /// assert_eq!(bundle.certs().len(), 1);
    /// assert!(TrustBundle::new(Vec::new()).is_err());
    /// # Ok(()) }
    /// ```
    pub fn new(roots: Vec<CertificateDer<'static>>) -> Result<Self, TlsError> {
        if roots.is_empty() {
            return Err(TlsError::Config("trust bundle: no root certificate".into()));
        }
        let mut unique: Vec<CertificateDer<'static>> = Vec::with_capacity(roots.len());
        for r in roots {
            if !unique.contains(&r) {
                unique.push(r);
            }
        }
        let mut store = RootCertStore::empty();
        let mut subjects = Vec::with_capacity(unique.len());
        let mut validity = Vec::with_capacity(unique.len());
        let secs = |t: std::time::SystemTime| {
            t.duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        };
        for (i, r) in unique.iter().enumerate() {
            store.add(r.clone()).map_err(|e| {
                TlsError::invalid(format!("trust bundle root #{}", i + 1), e.to_string())
            })?;
            let info = CertInfo::parse(r)
                .map_err(|e| TlsError::parse(format!("trust bundle root #{}", i + 1), e))?;
            validity.push((secs(info.not_before), secs(info.not_after)));
            subjects.push(info.subject);
        }
        Ok(Self {
            certs: unique.into(),
            store: Arc::new(store),
            subjects: subjects.into(),
            validity: validity.into(),
        })
    }

    /// Parses every certificate of a PEM text (e.g. `root-cert.pem`) as a root.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tls::{MeshCa, TrustBundle};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let ca = MeshCa::self_signed("cluster.local")?;
    /// let bundle = TrustBundle::from_pem(ca.trust_bundle().to_pem().as_bytes())?;
    /// assert_eq!(bundle.certs(), ca.trust_bundle().certs());
    /// assert!(TrustBundle::from_pem(b"no PEM here").is_err());
    /// # Ok(()) }
    /// ```
    pub fn from_pem(pem: &[u8]) -> Result<Self, TlsError> {
        Self::new(pki::certs_from_pem("trust bundle", pem)?)
    }

    /// Reads a PEM file of roots.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tls::{MeshCa, TrustBundle};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let ca = MeshCa::self_signed("cluster.local")?;
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("root-cert.pem");
    /// std::fs::write(&path, ca.trust_bundle().to_pem())?;
    ///
    /// let bundle = TrustBundle::from_pem_file(&path)?;
    /// assert_eq!(bundle.certs(), ca.trust_bundle().certs());
    /// // A missing file is an error naming the path.
    /// let err = TrustBundle::from_pem_file(dir.path().join("missing.pem")).unwrap_err();
    /// assert!(err.to_string().contains("missing.pem"));
    /// # Ok(()) }
    /// ```
    pub fn from_pem_file(path: impl AsRef<Path>) -> Result<Self, TlsError> {
        let path = path.as_ref();
        let pem = pki::read_file(path)?;
        Self::new(pki::certs_from_pem(&path.display().to_string(), &pem)?)
    }

    /// This bundle plus the roots of `other` (duplicates dropped).
    ///
    /// # Examples
    ///
    /// Root rotation: trust the old and the new root while workloads move over.
    ///
    /// ```
    /// use mesh_tls::MeshCa;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let old = MeshCa::self_signed("cluster.local")?;
    /// let new = MeshCa::self_signed("cluster.local")?;
    /// let both = old.trust_bundle().merged(new.trust_bundle())?;
    /// assert_eq!(both.certs().len(), 2);
    /// assert!(both.contains_all(old.trust_bundle()));
    /// assert!(both.contains_all(new.trust_bundle()));
    /// assert!(!old.trust_bundle().contains_all(&both));
    /// // Merging a root twice keeps one copy.
    /// assert_eq!(both.merged(old.trust_bundle())?.certs().len(), 2);
    /// # Ok(()) }
    /// ```
    pub fn merged(&self, other: &TrustBundle) -> Result<Self, TlsError> {
        let mut all = self.certs.to_vec();
        all.extend(other.certs.iter().cloned());
        Self::new(all)
    }

    /// Whether every root of `other` is already in this bundle.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tls::MeshCa;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let a = MeshCa::self_signed("cluster.local")?;
    /// let b = MeshCa::self_signed("cluster.local")?;
    /// assert!(a.trust_bundle().contains_all(a.trust_bundle()));
    /// assert!(!a.trust_bundle().contains_all(b.trust_bundle()));
    /// # Ok(()) }
    /// ```
    pub fn contains_all(&self, other: &TrustBundle) -> bool {
        other.certs.iter().all(|c| self.certs.contains(c))
    }

    /// The roots, DER.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tls::{certs_from_pem, MeshCa};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let ca = MeshCa::self_signed("cluster.local")?;
    /// let roots = ca.trust_bundle().certs();
    /// assert_eq!(roots.len(), 1);
    /// assert_eq!(roots, certs_from_pem("root-cert.pem", ca.trust_bundle().to_pem().as_bytes())?);
    /// # Ok(()) }
    /// ```
    pub fn certs(&self) -> &[CertificateDer<'static>] {
        &self.certs
    }

    /// The roots as one PEM text (Istio's `root-cert.pem`).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tls::MeshCa;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let ca = MeshCa::self_signed("cluster.local")?;
    /// let pem = ca.trust_bundle().to_pem();
    /// assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
    /// assert!(pem.ends_with("-----END CERTIFICATE-----\n"));
    /// # Ok(()) }
    /// ```
    pub fn to_pem(&self) -> String {
        pki::certs_to_pem(&self.certs)
    }

    /// The subjects of the roots (for error messages).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tls::MeshCa;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let ca = MeshCa::self_signed("cluster.local")?;
    /// assert_eq!(ca.trust_bundle().subjects(), ["O=cluster.local, CN=Root CA"]);
    /// # Ok(()) }
    /// ```
    pub fn subjects(&self) -> &[String] {
        &self.subjects
    }

    /// The rustls root store, built once.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tls::MeshCa;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let a = MeshCa::self_signed("cluster.local")?;
    /// let b = MeshCa::self_signed("cluster.local")?;
    /// let both = a.trust_bundle().merged(b.trust_bundle())?;
    /// assert_eq!(both.root_store().len(), 2);
    /// # Ok(()) }
    /// ```
    pub fn root_store(&self) -> &Arc<RootCertStore> {
        &self.store
    }
}

impl TrustBundle {
    /// The roots outside their validity dates at `now`, described (`root 1 expired at
    /// ...`, counted in the bundle's order); `None` when all are within them.
    pub(crate) fn outside_dates(&self, now: rustls::pki_types::UnixTime) -> Option<String> {
        let t = now.as_secs();
        let at = |s: u64| {
            crate::error::rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_secs(s))
        };
        let notes: Vec<String> = self
            .validity
            .iter()
            .enumerate()
            .filter_map(|(i, &(nb, na))| {
                if t > na {
                    Some(format!("root {} expired at {}", i + 1, at(na)))
                } else if t < nb {
                    Some(format!("root {} is not valid before {}", i + 1, at(nb)))
                } else {
                    None
                }
            })
            .collect();
        (!notes.is_empty()).then(|| notes.join(", "))
    }

    /// The trust anchors valid at `now` when some root is not (expired or not yet valid),
    /// `None` when every root is: Envoy's chain verification (BoringSSL's `X509_verify_cert`)
    /// checks the dates of every certificate of the chain, the root's too, which webpki's
    /// anchors do not carry.
    pub(crate) fn anchors_valid_at(
        &self,
        now: rustls::pki_types::UnixTime,
    ) -> Option<Vec<rustls::pki_types::TrustAnchor<'static>>> {
        let t = now.as_secs();
        let valid = |(nb, na): &(u64, u64)| *nb <= t && t <= *na;
        if self.validity.iter().all(valid) {
            return None;
        }
        Some(
            self.store
                .roots
                .iter()
                .zip(self.validity.iter())
                .filter(|(_, v)| valid(v))
                .map(|(a, _)| a.clone())
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors() {
        assert!(TrustBundle::new(Vec::new()).is_err());
        assert!(TrustBundle::from_pem(b"").is_err());
        assert!(TrustBundle::from_pem_file("/nonexistent/root.pem")
            .unwrap_err()
            .to_string()
            .contains("/nonexistent/root.pem"));
    }
}
