//! Who a client is: the server's security settings (TLS, the authentication method), the
//! SCRAM-SHA-256 exchange against the verifiers the metadata store keeps, and the login
//! throttle that slows down password guessing.
//!
//! SCRAM follows RFC 5802/7677 as PostgreSQL does: the server holds only `StoredKey` and
//! `ServerKey`, checks the client's proof with them and proves itself back. A user that does
//! not exist, or has no password, gets the same exchange over a mock verifier and the same
//! error at its end (28P01), so a client cannot tell which names exist.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use pgwire::error::{ErrorInfo, PgWireError};
use quantatom_engine::metadata::ScramVerifier;

/// How clients prove who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// No proof: a client is the user it names. For the one-machine demo, or behind a proxy
    /// that authenticated already.
    Trust,
    /// SCRAM-SHA-256 against the users' password verifiers in the metadata store.
    ScramSha256,
}

impl AuthMethod {
    /// The method named as PostgreSQL's `pg_hba.conf` names it (`trust`, `scram-sha-256`).
    pub fn named(name: &str) -> Option<Self> {
        match name {
            "trust" => Some(Self::Trust),
            "scram-sha-256" => Some(Self::ScramSha256),
            _ => None,
        }
    }
}

/// Limits on failed logins, per user name and client address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginLimits {
    /// Failures in a row after which logins of that user from that address are refused.
    pub max_failures: u32,
    /// How long they are refused; failures older than this are forgotten.
    pub lockout: Duration,
    /// How long the answer to a failed login is held back (as PostgreSQL's `auth_delay`).
    pub failure_delay: Duration,
}

impl Default for LoginLimits {
    /// Five failures, then a minute locked out; each failure answered after half a second.
    fn default() -> Self {
        Self {
            max_failures: 5,
            lockout: Duration::from_secs(60),
            failure_delay: Duration::from_millis(500),
        }
    }
}

/// The wire server's security: TLS and authentication.
#[derive(Clone)]
pub struct Security {
    /// How clients authenticate.
    pub auth: AuthMethod,
    /// TLS, when a certificate is configured.
    pub tls: Option<pgwire::tokio::TlsAcceptor>,
    /// Whether plaintext connections are refused.
    pub tls_required: bool,
    /// Limits on failed logins.
    pub login_limits: LoginLimits,
}

impl Default for Security {
    /// Trust without TLS: the embedded demo's and the tests' setting.
    fn default() -> Self {
        Self {
            auth: AuthMethod::Trust,
            tls: None,
            tls_required: false,
            login_limits: LoginLimits::default(),
        }
    }
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Security")
            .field("auth", &self.auth)
            .field("tls", &self.tls.is_some())
            .field("tls_required", &self.tls_required)
            .field("login_limits", &self.login_limits)
            .finish()
    }
}

/// A FATAL error with `code`, ending the connection.
pub(crate) fn fatal(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".into(),
        code.into(),
        message,
    )))
}

/// The error of a failed password check: the same whatever failed.
pub(crate) fn password_failed(user: &str) -> PgWireError {
    fatal(
        "28P01",
        format!("password authentication failed for user \"{user}\""),
    )
}

/// The error of a login refused while `user`'s lockout holds for `remaining`.
pub(crate) fn locked_out(user: &str, address: IpAddr, remaining: Duration) -> PgWireError {
    tracing::warn!(user, %address, "login refused: too many failed logins");
    fatal(
        "28000",
        format!(
            "too many failed logins for user \"{user}\" from this address: try again in {} s",
            remaining.as_secs().max(1)
        ),
    )
}

/// A SCRAM message that does not follow RFC 5802.
fn malformed(what: &str) -> PgWireError {
    fatal("08P01", format!("malformed SCRAM message: {what}"))
}

/// Failed logins by user and address, shared by every connection.
#[derive(Debug, Default)]
pub(crate) struct LoginThrottle {
    limits: LoginLimits,
    failures: Mutex<HashMap<(String, IpAddr), Failures>>,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

impl LoginThrottle {
    /// A throttle with `limits`.
    pub(crate) fn new(limits: LoginLimits) -> Self {
        Self {
            limits,
            failures: Mutex::default(),
        }
    }

    /// How much longer logins of `user` from `address` are refused, if they are.
    pub(crate) fn locked_for(&self, user: &str, address: IpAddr) -> Option<Duration> {
        let failures = self.failures.lock().expect("login throttle poisoned");
        let entry = failures.get(&(user.to_owned(), address))?;
        let remaining = self.limits.lockout.checked_sub(entry.last.elapsed())?;
        (entry.count >= self.limits.max_failures).then_some(remaining)
    }

    /// Starts a password check of `user` from `address`: counted as a failure until it
    /// succeeds, so that guesses sent in parallel are limited as well as guesses in a row.
    /// Refused, with the time left, while the lockout holds.
    pub(crate) fn attempt(&self, user: &str, address: IpAddr) -> Result<(), Duration> {
        let mut failures = self.failures.lock().expect("login throttle poisoned");
        let lockout = self.limits.lockout;
        failures.retain(|_, f| f.last.elapsed() < lockout);
        let entry = failures
            .entry((user.to_owned(), address))
            .or_insert(Failures {
                count: 0,
                last: Instant::now(),
            });
        if entry.count >= self.limits.max_failures {
            return Err(lockout.saturating_sub(entry.last.elapsed()));
        }
        entry.count += 1;
        entry.last = Instant::now();
        Ok(())
    }

    /// Logs a failed password check (counted when it started) and waits the failure delay.
    pub(crate) async fn failed(&self, user: &str, address: IpAddr) {
        let count = self
            .failures
            .lock()
            .expect("login throttle poisoned")
            .get(&(user.to_owned(), address))
            .map_or(0, |f| f.count);
        if count >= self.limits.max_failures {
            tracing::warn!(user, %address, failures = count, lockout_secs = self.limits.lockout.as_secs(), "login failed: logins of this user from this address are refused for the lockout");
        } else {
            tracing::warn!(user, %address, failures = count, "login failed");
        }
        tokio::time::sleep(self.limits.failure_delay).await;
    }

    /// Forgets the failures of `user` from `address` after a successful login.
    pub(crate) fn succeeded(&self, user: &str, address: IpAddr) {
        self.failures
            .lock()
            .expect("login throttle poisoned")
            .remove(&(user.to_owned(), address));
    }
}

/// The key mock verifiers are derived from: random per process.
static MOCK_SECRET: LazyLock<[u8; 32]> = LazyLock::new(rand::random);

/// A SCRAM-SHA-256 exchange after the server's first message, waiting for the client's final.
#[derive(Debug)]
pub(crate) struct ScramExchange {
    verifier: ScramVerifier,
    /// Whether the verifier is the user's own (not a mock one).
    genuine: bool,
    gs2_header: String,
    client_first_bare: String,
    server_first: String,
    nonce: String,
}

impl ScramExchange {
    /// Reads the client's first message and makes the server's, over `verifier` (the user's,
    /// or a mock one when `None`).
    pub(crate) fn start(
        client_first: &[u8],
        user: &str,
        verifier: Option<ScramVerifier>,
    ) -> Result<(Self, String), PgWireError> {
        let client_first = std::str::from_utf8(client_first).map_err(|_| malformed("not UTF-8"))?;
        let mut parts = client_first.splitn(3, ',');
        let (flag, authzid, bare) = match (parts.next(), parts.next(), parts.next()) {
            (Some(flag), Some(authzid), Some(bare)) => (flag, authzid, bare),
            _ => return Err(malformed("no GS2 header")),
        };
        if flag.starts_with("p=") {
            return Err(fatal(
                "28000",
                "channel binding (SCRAM-SHA-256-PLUS) is not offered by this server".into(),
            ));
        }
        if !matches!(flag, "n" | "y") || !(authzid.is_empty() || authzid.starts_with("a=")) {
            return Err(malformed("bad GS2 header"));
        }
        let client_nonce = bare
            .split(',')
            .find_map(|attribute| attribute.strip_prefix("r="))
            .filter(|nonce| !nonce.is_empty())
            .ok_or_else(|| malformed("no client nonce"))?;
        let genuine = verifier.is_some();
        let verifier = verifier.unwrap_or_else(|| ScramVerifier::mock(MOCK_SECRET.as_ref(), user));
        let nonce = format!(
            "{client_nonce}{}",
            STANDARD.encode(rand::random::<[u8; 18]>())
        );
        let server_first = format!(
            "r={nonce},s={},i={}",
            STANDARD.encode(&verifier.salt),
            verifier.iterations
        );
        let exchange = Self {
            verifier,
            genuine,
            gs2_header: format!("{flag},{authzid},"),
            client_first_bare: bare.to_owned(),
            server_first: server_first.clone(),
            nonce,
        };
        Ok((exchange, server_first))
    }

    /// Checks the client's final message; the server's final message when the proof is right,
    /// `None` when it is not.
    pub(crate) fn finish(&self, client_final: &[u8]) -> Result<Option<String>, PgWireError> {
        let client_final = std::str::from_utf8(client_final).map_err(|_| malformed("not UTF-8"))?;
        let (without_proof, proof) = client_final
            .rsplit_once(",p=")
            .ok_or_else(|| malformed("no proof"))?;
        let mut attributes = without_proof.split(',');
        let binding = attributes.next().and_then(|a| a.strip_prefix("c="));
        let nonce = attributes.next().and_then(|a| a.strip_prefix("r="));
        if binding != Some(STANDARD.encode(&self.gs2_header).as_str()) {
            return Err(malformed("channel binding does not match the GS2 header"));
        }
        if nonce != Some(self.nonce.as_str()) {
            return Err(malformed("nonce does not match"));
        }
        let proof = STANDARD
            .decode(proof)
            .map_err(|_| malformed("proof is not base64"))?;
        let auth_message = format!(
            "{},{},{}",
            self.client_first_bare, self.server_first, without_proof
        );
        let signature = self
            .verifier
            .verify_proof(auth_message.as_bytes(), &proof)
            .filter(|_| self.genuine);
        Ok(signature.map(|signature| format!("v={}", STANDARD.encode(signature))))
    }
}

/// Whether `database` names Quantatom's one database: `quantatom`, `postgres` (what many
/// tools connect to first), or the user's own name (libpq's default when none is given).
pub(crate) fn is_our_database(database: &str, user: &str) -> bool {
    matches!(database, "quantatom" | "postgres") || database == user
}

/// A TLS acceptor over the PEM certificate chain and private key at these paths, offering
/// ALPN `postgresql` (for direct TLS connections, PostgreSQL 17's `sslnegotiation=direct`).
pub fn tls_acceptor(
    certificate: &std::path::Path,
    key: &std::path::Path,
) -> Result<pgwire::tokio::TlsAcceptor, String> {
    use pgwire::tokio::tokio_rustls::rustls;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(certificate)
        .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read the certificate {}: {e}", certificate.display()))?;
    if chain.is_empty() {
        return Err(format!("{} holds no certificate", certificate.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("cannot read the private key {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("the certificate and key do not make a TLS identity: {e}"))?;
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(pgwire::tokio::TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The right and wrong proofs are checked end to end with real clients (tests/it/security.rs).
    #[test]
    fn a_scram_exchange_checks_its_messages() {
        let verifier = ScramVerifier::parse(&ScramVerifier::hash("pencil")).unwrap();
        let (exchange, server_first) =
            ScramExchange::start(b"n,,n=,r=clientnonce", "ana", Some(verifier)).unwrap();
        let nonce = server_first
            .split(',')
            .next()
            .unwrap()
            .strip_prefix("r=")
            .unwrap();
        assert!(nonce.starts_with("clientnonce") && nonce.len() > 20);
        // The nonce and the channel binding must be the ones of this exchange.
        let proof = STANDARD.encode([0u8; 32]);
        assert!(
            exchange
                .finish(format!("c=biws,r=other,p={proof}").as_bytes())
                .is_err()
        );
        assert!(
            exchange
                .finish(format!("c=eSws,r={nonce},p={proof}").as_bytes())
                .is_err()
        );
        assert_eq!(
            exchange
                .finish(format!("c=biws,r={nonce},p={proof}").as_bytes())
                .unwrap(),
            None
        );
        let (mock, _) = ScramExchange::start(b"n,,n=,r=x", "nobody", None).unwrap();
        assert!(!mock.genuine);
        assert!(ScramExchange::start(b"p=tls-server-end-point,,n=,r=x", "ana", None).is_err());
        assert!(ScramExchange::start(b"garbage", "ana", None).is_err());
    }

    #[test]
    fn the_throttle_counts_attempts_as_they_start() {
        let throttle = LoginThrottle::new(LoginLimits {
            max_failures: 2,
            lockout: Duration::from_secs(60),
            failure_delay: Duration::ZERO,
        });
        let address: IpAddr = "127.0.0.1".parse().unwrap();
        // Two checks in flight at once use up the allowance; a third is refused at once.
        assert!(throttle.attempt("ana", address).is_ok());
        assert!(throttle.locked_for("ana", address).is_none());
        assert!(throttle.attempt("ana", address).is_ok());
        assert!(throttle.attempt("ana", address).is_err());
        assert!(throttle.locked_for("ana", address).is_some());
        assert!(throttle.attempt("bo", address).is_ok());
        throttle.succeeded("ana", address);
        assert!(throttle.locked_for("ana", address).is_none());
        assert!(throttle.attempt("ana", address).is_ok());
    }
}
