//! The SHA-256 of the bytes a reader actually read. An extract is fingerprinted when it
//! is listed and read later; comparing the two tells a file that changed in between (an
//! export still being appended to) from the one the ledger records.

use std::io::Read;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use lakescore_engine::storage::hashing::hex;

/// A handle on the running SHA-256 of everything read through [`ReadDigest::wrap`].
#[derive(Clone, Default)]
pub struct ReadDigest {
    hasher: Arc<Mutex<Sha256>>,
}

impl ReadDigest {
    /// `input`, hashing every byte read from it into this digest.
    pub fn wrap<R: Read>(&self, input: R) -> Digesting<R> {
        Digesting {
            input,
            hasher: Some(self.hasher.clone()),
        }
    }

    /// `sha256:<hex>` of the bytes read so far.
    pub fn fingerprint(&self) -> String {
        let hasher = self.hasher.lock().unwrap_or_else(|e| e.into_inner());
        format!("sha256:{}", hex(&hasher.clone().finalize()))
    }
}

/// A reader hashing what passes through it (or, [`Digesting::unhashed`], nothing).
pub struct Digesting<R> {
    input: R,
    hasher: Option<Arc<Mutex<Sha256>>>,
}

impl<R> Digesting<R> {
    /// `input` read as it is, for a pass whose bytes nobody checks.
    pub fn unhashed(input: R) -> Self {
        Self {
            input,
            hasher: None,
        }
    }
}

impl<R: Read> Read for Digesting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let read = self.input.read(buf)?;
        if let Some(hasher) = &self.hasher {
            hasher
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .update(&buf[..read]);
        }
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_is_the_sha256_of_the_bytes_read() {
        let digest = ReadDigest::default();
        let mut text = String::new();
        digest.wrap(&b"a"[..]).read_to_string(&mut text).unwrap();
        assert_eq!(
            digest.fingerprint(),
            "sha256:ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb"
        );
    }
}
