//! istioctl's annotation analyzer (placeholder, being written).

/// The annotation findings.
pub(super) fn annotations(_objs: &[&crate::model::ConfigObject]) -> Vec<crate::diag::Diagnostic> {
    Vec::new()
}
