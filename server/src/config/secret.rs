//! A secret: a value (a bearer token) that must never reach a log line.
//! Its `Debug` prints `<redacted>`, so the structs holding one derive theirs.

use std::sync::Arc;

/// A bearer token. Cloning shares the value; reading it is explicit
/// ([`Secret::expose`]); comparing it takes constant time.
#[derive(Clone)]
pub struct Secret(Arc<str>);

impl Secret {
    pub fn new(value: impl Into<Arc<str>>) -> Self {
        Self(value.into())
    }

    /// The value itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `presented` is this secret, in time independent of where they
    /// differ (a timing side channel would give it away byte by byte).
    pub fn matches(&self, presented: &str) -> bool {
        subtle::ConstantTimeEq::ct_eq(presented.as_bytes(), self.0.as_bytes()).into()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::Secret;

    #[test]
    fn debug_hides_the_value_and_matching_is_exact() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), "<redacted>");
        assert_eq!(format!("{:?}", Some(secret.clone())), "Some(<redacted>)");
        assert!(secret.matches("hunter2"));
        assert!(!secret.matches("hunter") && !secret.matches("hunter22") && !secret.matches(""));
        assert_eq!(secret.expose(), "hunter2");
    }
}
