//! Passwords as PostgreSQL keeps them: a SCRAM-SHA-256 verifier
//! (`SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, RFC 5802 and 7677), from which
//! a server can check a client's proof but which cannot itself be used to log in. The password
//! is never stored.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

/// The prefix of every verifier, as in `pg_authid.rolpassword`.
const SCHEME: &str = "SCRAM-SHA-256";

/// The most PBKDF2 iterations a verifier may ask clients for: PostgreSQL's default is 4096;
/// far more would make every login of that user (and the server's own checks) crawl.
const MAX_ITERATIONS: u32 = 1_000_000;

/// A parsed SCRAM-SHA-256 verifier.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramVerifier {
    /// PBKDF2 iterations.
    pub iterations: u32,
    /// The salt.
    pub salt: Vec<u8>,
    /// `H(HMAC(SaltedPassword, "Client Key"))`: checks a client's proof.
    pub stored_key: [u8; 32],
    /// `HMAC(SaltedPassword, "Server Key")`: proves the server to the client.
    pub server_key: [u8; 32],
}

impl std::fmt::Debug for ScramVerifier {
    /// Shows the parameters, not the keys.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramVerifier")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl ScramVerifier {
    /// The verifier PostgreSQL would store for `password` (SASLprep-normalised, a fresh random
    /// salt, 4096 iterations), as text.
    pub fn hash(password: &str) -> String {
        postgres_protocol::password::scram_sha_256(password.as_bytes())
    }

    /// Parses a stored verifier; `None` when `text` is not one (a plaintext or MD5 password).
    pub fn parse(text: &str) -> Option<Self> {
        let rest = text.strip_prefix(SCHEME)?.strip_prefix('$')?;
        let (parameters, keys) = rest.split_once('$')?;
        let (iterations, salt) = parameters.split_once(':')?;
        let (stored_key, server_key) = keys.split_once(':')?;
        let key = |text: &str| -> Option<[u8; 32]> { STANDARD.decode(text).ok()?.try_into().ok() };
        Some(Self {
            iterations: iterations
                .parse()
                .ok()
                .filter(|i| (1..=MAX_ITERATIONS).contains(i))?,
            salt: STANDARD.decode(salt).ok().filter(|s| !s.is_empty())?,
            stored_key: key(stored_key)?,
            server_key: key(server_key)?,
        })
    }

    /// The verifier of `password` with this verifier's salt and iterations.
    fn derive(password: &str, salt: &[u8], iterations: u32) -> Self {
        let normalised = stringprep::saslprep(password)
            .map(|p| p.into_owned())
            .unwrap_or_else(|_| password.to_owned());
        let salted = salted_password(normalised.as_bytes(), salt, iterations);
        Self {
            iterations,
            salt: salt.to_vec(),
            stored_key: Sha256::digest(hmac(&salted, b"Client Key")).into(),
            server_key: hmac(&salted, b"Server Key"),
        }
    }

    /// Whether `password` is the password this verifier was made from.
    pub fn matches(&self, password: &str) -> bool {
        let derived = Self::derive(password, &self.salt, self.iterations);
        constant_time_eq(&derived.stored_key, &self.stored_key)
            && constant_time_eq(&derived.server_key, &self.server_key)
    }

    /// A verifier no password matches, the same for the same `user` and `secret`: offered to a
    /// client logging in as a user that does not exist or has no password, so that the
    /// exchange looks the same as for a real user (as PostgreSQL's mock authentication does).
    pub fn mock(secret: &[u8], user: &str) -> Self {
        let salt = hmac(secret, user.as_bytes())[..16].to_vec();
        Self {
            iterations: 4096,
            salt,
            stored_key: hmac(secret, b"no stored key"),
            server_key: hmac(secret, b"no server key"),
        }
    }

    /// Checks a client's proof over `auth_message`; on success, the server signature to send
    /// back (`v=`).
    pub fn verify_proof(&self, auth_message: &[u8], proof: &[u8]) -> Option<[u8; 32]> {
        let client_signature = hmac(&self.stored_key, auth_message);
        let client_key: Vec<u8> = proof
            .iter()
            .zip(client_signature)
            .map(|(p, s)| p ^ s)
            .collect();
        let stored_key: [u8; 32] = Sha256::digest(&client_key).into();
        (proof.len() == 32 && constant_time_eq(&stored_key, &self.stored_key))
            .then(|| hmac(&self.server_key, auth_message))
    }
}

/// `Hi(password, salt, iterations)` of RFC 5802: PBKDF2 with HMAC-SHA-256, one block.
fn salted_password(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut first = salt.to_vec();
    first.extend_from_slice(&1u32.to_be_bytes());
    let mut block = hmac(password, &first);
    let mut result = block;
    for _ in 1..iterations {
        block = hmac(password, &block);
        result.iter_mut().zip(block).for_each(|(r, b)| *r ^= b);
    }
    result
}

/// HMAC-SHA-256 of `data` under `key`.
fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Whether `a` equals `b`, in time independent of where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::ScramVerifier;

    #[test]
    fn a_hashed_password_matches_itself_only() {
        let text = ScramVerifier::hash("s3cret pass");
        assert!(text.starts_with("SCRAM-SHA-256$4096:"), "{text}");
        assert!(!text.contains("s3cret"));
        let verifier = ScramVerifier::parse(&text).expect("a verifier");
        assert!(verifier.matches("s3cret pass"));
        assert!(!verifier.matches("s3cret pas"));
        assert!(!ScramVerifier::mock(b"secret", "ana").matches(""));
        assert_eq!(
            ScramVerifier::mock(b"secret", "ana"),
            ScramVerifier::mock(b"secret", "ana")
        );
        assert!(ScramVerifier::parse("md5abc").is_none());
        assert!(ScramVerifier::parse("plain").is_none());
    }

    /// The SCRAM-SHA-256 exchange of RFC 7677, section 3 (user "user", password "pencil").
    #[test]
    fn the_rfc_7677_exchange_verifies() {
        use base64::Engine;
        let decode = |text: &str| {
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .unwrap()
        };
        let verifier = ScramVerifier::derive("pencil", &decode("W22ZaJ0SNY7soEsUEjb6gQ=="), 4096);
        let nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let auth_message = format!(
            "n=user,r=rOprNGfwEbeRWgbNEkqO,r={nonce},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r={nonce}"
        );
        let proof = decode("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
        let signature = verifier.verify_proof(auth_message.as_bytes(), &proof);
        assert_eq!(
            signature.map(|s| s.to_vec()),
            Some(decode("6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="))
        );
        let mut wrong = proof.clone();
        wrong[0] ^= 1;
        assert!(
            verifier
                .verify_proof(auth_message.as_bytes(), &wrong)
                .is_none()
        );
    }
}
