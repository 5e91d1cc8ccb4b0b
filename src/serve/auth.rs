//! Bearer tokens with scopes: `read` (profiles and scores), `ingest` (webhook events),
//! `metrics` (`GET /metrics`, for Prometheus) and `admin` (everything the others may do).
//! A token listed under several scopes has each of them.
//!
//! Tokens come from a file (`--tokens FILE`: lines of `scope token`, `#` comments; a file
//! others than its owner may read is warned about) or the environment
//! (`PROFUSION_READ_TOKENS`, `PROFUSION_INGEST_TOKENS`, `PROFUSION_METRICS_TOKENS`,
//! `PROFUSION_ADMIN_TOKENS`, comma-separated). A presented token is compared with every
//! configured one in constant time (as SHA-256 digests, so lengths leak nothing either).

use std::fmt;
use std::path::Path;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::{Error, Result};

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// `GET /v1/views/...`, `POST /v1/score/...`.
    Read,
    /// `POST /v1/ingest/...`.
    Ingest,
    /// `GET /metrics`.
    Metrics,
    /// Everything.
    Admin,
}

impl Scope {
    fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_lowercase().as_str() {
            "read" => Some(Self::Read),
            "ingest" => Some(Self::Ingest),
            "metrics" => Some(Self::Metrics),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }

    /// True when a token of this scope may do what `needed` allows.
    pub fn allows(self, needed: Scope) -> bool {
        self == Scope::Admin || self == needed
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Read => "read",
            Self::Ingest => "ingest",
            Self::Metrics => "metrics",
            Self::Admin => "admin",
        })
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No token, or not one of ours: 401.
    Unauthenticated,
    /// A valid token without the scope needed: 403.
    Forbidden,
}

/// The configured tokens.
#[derive(Clone)]
pub struct Tokens {
    /// (SHA-256 of the token, its scope).
    digests: Vec<([u8; 32], Scope)>,
    /// No tokens needed at all (`--no-auth`).
    open: bool,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokens")
            .field("count", &self.digests.len())
            .field("open", &self.open)
            .finish()
    }
}

/// The shortest token accepted from configuration.
const MIN_TOKEN_LENGTH: usize = 16;

impl Tokens {
    /// Tokens of `(scope, token)` pairs; tokens shorter than 16 characters are refused.
    pub fn new(tokens: impl IntoIterator<Item = (Scope, String)>) -> Result<Self> {
        let mut digests = Vec::new();
        for (scope, token) in tokens {
            if token.len() < MIN_TOKEN_LENGTH {
                return Err(config_error(format!(
                    "a {scope} token is {} characters long: tokens need at least {MIN_TOKEN_LENGTH}",
                    token.len()
                )));
            }
            digests.push((digest(token.as_bytes()), scope));
        }
        Ok(Self {
            digests,
            open: false,
        })
    }

    /// No authentication: every request is admitted.
    pub fn open() -> Self {
        Self {
            digests: Vec::new(),
            open: true,
        }
    }

    /// True when no token is configured (and the server is not open).
    pub fn is_empty(&self) -> bool {
        self.digests.is_empty() && !self.open
    }

    /// True when every request is admitted.
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// Reads `scope token` lines from a file, warning when others than its owner may read
    /// it.
    pub fn from_file(path: &Path) -> Result<Vec<(Scope, String)>> {
        if let Some(warning) = readable_by_others(path) {
            eprintln!("warning: {warning}");
        }
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            context: format!("reading tokens from {}", path.display()),
            source,
        })?;
        let mut tokens = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut words = line.split_whitespace();
            let (Some(scope), Some(token), None) = (words.next(), words.next(), words.next())
            else {
                return Err(config_error(format!(
                    "{} line {}: expected 'read|ingest|metrics|admin TOKEN'",
                    path.display(),
                    number + 1
                )));
            };
            let scope = Scope::parse(scope).ok_or_else(|| {
                config_error(format!(
                    "{} line {}: unknown scope '{scope}' (read, ingest, metrics or admin)",
                    path.display(),
                    number + 1
                ))
            })?;
            tokens.push((scope, token.to_string()));
        }
        Ok(tokens)
    }

    /// Tokens from `PROFUSION_{READ,INGEST,ADMIN}_TOKENS`, as `env` reads them.
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Vec<(Scope, String)> {
        let mut tokens = Vec::new();
        for (variable, scope) in [
            ("PROFUSION_READ_TOKENS", Scope::Read),
            ("PROFUSION_INGEST_TOKENS", Scope::Ingest),
            ("PROFUSION_METRICS_TOKENS", Scope::Metrics),
            ("PROFUSION_ADMIN_TOKENS", Scope::Admin),
        ] {
            if let Some(value) = env(variable) {
                tokens.extend(
                    value
                        .split(',')
                        .map(str::trim)
                        .filter(|t| !t.is_empty())
                        .map(|t| (scope, t.to_string())),
                );
            }
        }
        tokens
    }

    /// Checks the `Authorization` header's value for `needed`.
    pub fn check(&self, authorization: Option<&[u8]>, needed: Scope) -> Result<(), Refusal> {
        if self.open {
            return Ok(());
        }
        let presented = authorization
            .and_then(|value| {
                let (scheme, token) = value.split_at_checked(7)?;
                scheme.eq_ignore_ascii_case(b"bearer ").then_some(token)
            })
            .ok_or(Refusal::Unauthenticated)?;
        let presented = digest(presented.trim_ascii());
        // Compare with every token, so timing says nothing about which matched; a token
        // listed under several scopes has each.
        let mut known = false;
        let mut allowed = false;
        for (stored, scope) in &self.digests {
            let matched = bool::from(stored.ct_eq(&presented));
            known |= matched;
            allowed |= matched && scope.allows(needed);
        }
        match (known, allowed) {
            (false, _) => Err(Refusal::Unauthenticated),
            (true, true) => Ok(()),
            (true, false) => Err(Refusal::Forbidden),
        }
    }
}

/// A new random token: 32 bytes from the operating system, as hex.
pub fn generate_token() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| Error::Io {
        context: "generating a token".into(),
        source: std::io::Error::other(e.to_string()),
    })?;
    Ok(hex::encode(bytes))
}

/// What to warn about when the file at `path` may be read by its group or by others.
#[cfg(unix)]
fn readable_by_others(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    (mode & 0o077 != 0).then(|| {
        format!(
            "the tokens file {} may be read by others than its owner (mode {:o}): \
             chmod 600 it",
            path.display(),
            mode & 0o777
        )
    })
}

#[cfg(not(unix))]
fn readable_by_others(_path: &Path) -> Option<String> {
    None
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn config_error(message: String) -> Error {
    Error::Io {
        context: "serve tokens".into(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Tokens {
        Tokens::new([
            (Scope::Read, "read-token-0123456789".to_string()),
            (Scope::Ingest, "ingest-token-0123456789".to_string()),
            (Scope::Admin, "admin-token-0123456789".to_string()),
        ])
        .unwrap()
    }

    #[test]
    fn scopes_are_enforced() {
        let t = tokens();
        let bearer = |token: &str| format!("Bearer {token}").into_bytes();
        assert_eq!(
            t.check(Some(&bearer("read-token-0123456789")), Scope::Read),
            Ok(())
        );
        assert_eq!(
            t.check(Some(&bearer("read-token-0123456789")), Scope::Ingest),
            Err(Refusal::Forbidden)
        );
        assert_eq!(
            t.check(Some(&bearer("admin-token-0123456789")), Scope::Ingest),
            Ok(())
        );
        assert_eq!(
            t.check(Some(&bearer("ingest-token-0123456789")), Scope::Admin),
            Err(Refusal::Forbidden)
        );
        assert_eq!(
            t.check(Some(&bearer("read-token-012345678")), Scope::Read),
            Err(Refusal::Unauthenticated)
        );
        assert_eq!(t.check(None, Scope::Read), Err(Refusal::Unauthenticated));
        assert_eq!(
            t.check(Some(b"Basic read-token-0123456789"), Scope::Read),
            Err(Refusal::Unauthenticated)
        );
        assert_eq!(
            t.check(Some(b"bearer read-token-0123456789"), Scope::Read),
            Ok(())
        );
    }

    #[test]
    fn short_tokens_and_bad_lines_are_refused() {
        assert!(Tokens::new([(Scope::Read, "short".to_string())]).is_err());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(
            &path,
            "# comment\nread aaaaaaaaaaaaaaaaaaaa\nwrite bbbbbbbbbbbbbbbbbbbbbb\n",
        )
        .unwrap();
        assert!(
            Tokens::from_file(&path)
                .unwrap_err()
                .to_string()
                .contains("line 3")
        );
        std::fs::write(
            &path,
            "read aaaaaaaaaaaaaaaaaaaa\n\nadmin cccccccccccccccccccc\n",
        )
        .unwrap();
        assert_eq!(Tokens::from_file(&path).unwrap().len(), 2);
    }

    #[test]
    fn tokens_come_from_the_environment() {
        let found = Tokens::from_env(|name| match name {
            "PROFUSION_READ_TOKENS" => Some("a, b".into()),
            "PROFUSION_ADMIN_TOKENS" => Some("c".into()),
            _ => None,
        });
        assert_eq!(
            found,
            vec![
                (Scope::Read, "a".into()),
                (Scope::Read, "b".into()),
                (Scope::Admin, "c".into())
            ]
        );
    }

    #[test]
    fn generated_tokens_differ() {
        let a = generate_token().unwrap();
        assert_eq!(a.len(), 64);
        assert_ne!(a, generate_token().unwrap());
    }
}
