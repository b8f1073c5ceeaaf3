//! TLS settings of `amqps://` connections: which certificate authorities to trust besides
//! the platform's, and which certificate to present to the broker.
//!
//! The files are read on every connect (the first, each reconnect, the lenient reader's),
//! so certificates renewed on disk are used without a restart. Which library does the TLS
//! is a cargo feature of this crate (`rustls-aws-lc`, the default, `rustls-ring` or
//! `native-tls`); without any of them an `amqps://` URL is refused rather than connected
//! in plain text.

use std::path::{Path, PathBuf};

use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};

/// The certificate (chain) and private key this client presents to the broker, for brokers
/// that verify clients (`ssl_options.verify = verify_peer`) or authenticate them by
/// certificate (`auth_mechanism=external` in the URL, with RabbitMQ's
/// `rabbitmq_auth_mechanism_ssl` plugin). Made with [`ClientIdentity::pem`] or
/// [`ClientIdentity::pkcs12`].
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientIdentity {
    /// A PEM certificate (chain, the client's own first) and its PEM private key, unencrypted
    /// PKCS#8 (`-----BEGIN PRIVATE KEY-----`, what `openssl genpkey` writes).
    #[non_exhaustive]
    Pem {
        /// The certificate chain file.
        cert_file: PathBuf,
        /// The private key file.
        key_file: PathBuf,
    },
    /// A PKCS#12 archive (`.p12`, `.pfx`) holding the certificate chain and the key.
    #[non_exhaustive]
    Pkcs12 {
        /// The archive file.
        file: PathBuf,
        /// The archive's password (empty for none).
        password: String,
    },
}

impl ClientIdentity {
    /// A PEM certificate chain file and its unencrypted PKCS#8 PEM key file.
    #[must_use]
    pub fn pem(cert_file: impl Into<PathBuf>, key_file: impl Into<PathBuf>) -> Self {
        Self::Pem { cert_file: cert_file.into(), key_file: key_file.into() }
    }

    /// A PKCS#12 archive file and its password (empty for none).
    #[must_use]
    pub fn pkcs12(file: impl Into<PathBuf>, password: impl Into<String>) -> Self {
        Self::Pkcs12 { file: file.into(), password: password.into() }
    }
}

impl std::fmt::Debug for ClientIdentity {
    /// Paths only: the password is never shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Pem { cert_file, key_file } => {
                f.debug_struct("Pem").field("cert_file", cert_file).field("key_file", key_file).finish()
            }
            Self::Pkcs12 { file, .. } => f.debug_struct("Pkcs12").field("file", file).finish_non_exhaustive(),
        }
    }
}

/// Why the TLS settings could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file named in the settings could not be read.
    #[error("cannot read the {what} `{}`: {source}", path.display())]
    Read {
        /// Which setting named it: `CA bundle`, `client certificate`, ...
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A PEM file holds no PEM block, or the CA bundle is not text.
    #[error("the {what} `{}` is not PEM (expected `-----BEGIN ...` blocks)", path.display())]
    NotPem {
        /// Which setting named it.
        what: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// The URL asks for TLS, and this build of eventing-amqp has no TLS library.
    #[error(
        "`amqps://` needs TLS, and eventing-amqp was built without any of its TLS features \
         (`rustls-aws-lc`, `rustls-ring`, `native-tls`)"
    )]
    NoTlsFeature,
}

/// The TLS settings in lapin's form, files read now; an error names the file at fault.
pub(crate) fn load(ca_file: Option<&Path>, identity: Option<&ClientIdentity>) -> Result<OwnedTLSConfig, TlsError> {
    if !cfg!(any(feature = "rustls-aws-lc", feature = "rustls-ring", feature = "native-tls")) {
        return Err(TlsError::NoTlsFeature);
    }
    let cert_chain = ca_file.map(|path| pem_text("CA bundle", path)).transpose()?;
    let identity = match identity {
        None => None,
        Some(ClientIdentity::Pem { cert_file, key_file }) => Some(OwnedIdentity::PKCS8 {
            pem: pem_text("client certificate", cert_file)?.into_bytes(),
            key: pem_text("client key", key_file)?.into_bytes(),
        }),
        Some(ClientIdentity::Pkcs12 { file, password }) => {
            Some(OwnedIdentity::PKCS12 { der: read("client PKCS#12 archive", file)?, password: password.clone() })
        }
    };
    Ok(OwnedTLSConfig { identity, cert_chain })
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { what, path: path.to_owned(), source })
}

/// A PEM file's text, checked to hold at least one PEM block (a DER file given by mistake
/// would otherwise be taken as "no certificates" by the TLS library, silently).
fn pem_text(what: &'static str, path: &Path) -> Result<String, TlsError> {
    let not_pem = || TlsError::NotPem { what, path: path.to_owned() };
    let text = String::from_utf8(read(what, path)?).map_err(|_| not_pem())?;
    if text.contains("-----BEGIN ") { Ok(text) } else { Err(not_pem()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, contents: &[u8]) -> PathBuf {
        let path = std::env::temp_dir().join(format!("eventing-amqp-tls-{}-{name}", std::process::id()));
        std::fs::write(&path, contents).expect("write a temporary file");
        path
    }

    #[test]
    fn a_missing_file_is_named() {
        let error = load(Some(Path::new("/nonexistent/ca.pem")), None).expect_err("no such file");
        assert!(error.to_string().contains("CA bundle `/nonexistent/ca.pem`"), "{error}");
    }

    #[test]
    fn a_der_file_is_not_taken_for_pem() {
        let ca = file("ca.der", &[0x30, 0x82, 0x01, 0x0a]);
        let error = load(Some(&ca), None).expect_err("DER, not PEM");
        let _ = std::fs::remove_file(&ca);
        assert!(matches!(error, TlsError::NotPem { what: "CA bundle", .. }), "{error}");
    }

    #[test]
    fn pem_files_and_an_archive_become_lapins_settings() {
        let pem = b"-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n";
        let (ca, cert, key, archive) =
            (file("ca.pem", pem), file("c.pem", pem), file("k.pem", pem), file("a.p12", b"\x30"));
        let from_pem = load(Some(&ca), Some(&ClientIdentity::Pem { cert_file: cert.clone(), key_file: key.clone() }));
        let from_archive = load(None, Some(&ClientIdentity::Pkcs12 { file: archive.clone(), password: "pw".into() }));
        for path in [&ca, &cert, &key, &archive] {
            let _ = std::fs::remove_file(path);
        }
        let from_pem = from_pem.expect("PEM settings load");
        assert_eq!(from_pem.cert_chain.as_deref().map(str::as_bytes), Some(&pem[..]));
        assert!(matches!(from_pem.identity, Some(OwnedIdentity::PKCS8 { .. })));
        let from_archive = from_archive.expect("an archive loads");
        assert_eq!(from_archive.identity, Some(OwnedIdentity::PKCS12 { der: vec![0x30], password: "pw".into() }));
    }

    #[test]
    fn the_password_is_not_shown() {
        let identity = ClientIdentity::Pkcs12 { file: "/a.p12".into(), password: "secret".into() };
        assert!(!format!("{identity:?}").contains("secret"));
    }
}
