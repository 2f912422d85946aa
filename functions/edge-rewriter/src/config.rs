//! The options compiled into the edge package (`config.json`): Lambda@Edge has no environment
//! variables, so the Node.js handler hands this file to the wasm module once, at cold start.

use serde::Deserialize;

use crate::rules::{is_plain, validate_path};

/// Why `config.json` was refused; the handler throws it at cold start, naming the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config.json is not UTF-8")]
    NotUtf8,
    #[error("invalid edge options: {0}")]
    Json(#[source] serde_json::Error),
    #[error("indexDocument \"{0}\" must be a file name with an extension (such as index.html)")]
    IndexDocument(String),
    #[error("redirectStatus {0} must be 301, 302, 307 or 308")]
    RedirectStatus(u16),
    #[error("spaPrefix \"{0}\" must be a plain path starting with a single /")]
    SpaPrefix(String),
}

/// What to do with extensionless paths such as `/about`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Extensionless {
    /// Redirect to `/about/`, so relative links on the page resolve (default).
    #[default]
    Redirect,
    /// Serve `/about/index.html` directly, without a redirect.
    Rewrite,
}

/// Options compiled into the edge package (`config.json`): Lambda@Edge has no environment.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Options {
    pub index_document: String,
    pub extensionless: Extensionless,
    /// Extensionless paths under these prefixes (single-page applications) are answered with
    /// the prefix's index document, e.g. `/app/` -> `/app/index.html`.
    pub spa_prefixes: Vec<String>,
    pub redirect_status: u16,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            index_document: "index.html".into(),
            extensionless: Extensionless::Redirect,
            spa_prefixes: Vec::new(),
            redirect_status: 301,
        }
    }
}

impl Options {
    /// Parses and checks `config.json`. SPA prefixes are normalised to `/…/`.
    pub fn from_json(json: &str) -> Result<Self, ConfigError> {
        let mut o: Options = serde_json::from_str(json).map_err(ConfigError::Json)?;
        o.validate()?;
        for p in &mut o.spa_prefixes {
            if !p.ends_with('/') {
                p.push('/');
            }
        }
        Ok(o)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let doc = &self.index_document;
        if doc.is_empty() || doc.contains('/') || doc.contains('\\') || !doc.contains('.') || !is_plain(doc) {
            return Err(ConfigError::IndexDocument(doc.clone()));
        }
        if ![301, 302, 307, 308].contains(&self.redirect_status) {
            return Err(ConfigError::RedirectStatus(self.redirect_status));
        }
        for p in &self.spa_prefixes {
            if !p.starts_with('/') || p.starts_with("//") || !is_plain(p) || validate_path(p).is_err() {
                return Err(ConfigError::SpaPrefix(p.clone()));
            }
        }
        Ok(())
    }
}
