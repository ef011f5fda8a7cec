//! The bytes of an off-site object: a backup file compressed with zstd (or not), then
//! encrypted to age X25519 recipients (or not), streamed both ways through fixed buffers so a
//! backup is never held in memory. Both directions hash what passes: the plain file and the
//! object, each with its blake3 and size, which the remote manifest records.
//!
//! An encrypted object is a standard age file: `age -d -i identity.txt OBJECT | zstd -d`
//! gives back the backup file.

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

use crate::config::Compression;

/// How an object is encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Encryption {
    /// Stored as is.
    None,
    /// The age format, to X25519 recipients.
    AgeX25519,
}

/// What an upload encodes with.
pub(crate) struct Encoding {
    /// zstd or none.
    pub(crate) compression: Compression,
    /// The zstd level.
    pub(crate) level: i32,
    /// Empty: no encryption.
    pub(crate) recipients: Vec<age::x25519::Recipient>,
}

impl std::fmt::Debug for Encoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoding")
            .field("compression", &self.compression)
            .field("level", &self.level)
            .field("recipients", &self.recipients.len())
            .finish()
    }
}

impl Encoding {
    /// The encryption this encoding applies.
    pub(crate) fn encryption(&self) -> Encryption {
        if self.recipients.is_empty() {
            Encryption::None
        } else {
            Encryption::AgeX25519
        }
    }

    /// The object name's suffix: `.redb`, then `.zst`, then `.age`.
    pub(crate) fn suffix(&self) -> String {
        let mut suffix = ".redb".to_string();
        if self.compression == Compression::Zstd {
            suffix.push_str(".zst");
        }
        if !self.recipients.is_empty() {
            suffix.push_str(".age");
        }
        suffix
    }
}

/// The blake3 and length of a stream of bytes.
#[derive(Debug, Clone, Default)]
pub(crate) struct Digest {
    hasher: blake3::Hasher,
    /// Bytes seen.
    pub(crate) bytes: u64,
}

impl Digest {
    fn update(&mut self, data: &[u8]) {
        self.hasher.update(data);
        self.bytes += data.len() as u64;
    }

    /// The lowercase hex blake3.
    pub(crate) fn hex(&self) -> String {
        self.hasher.finalize().to_hex().to_string()
    }
}

/// Passes writes to `inner`, hashing them.
#[derive(Debug)]
pub(crate) struct HashingWriter<W> {
    inner: W,
    pub(crate) digest: Digest,
}

impl<W> HashingWriter<W> {
    pub(crate) fn new(inner: W) -> HashingWriter<W> {
        HashingWriter {
            inner,
            digest: Digest::default(),
        }
    }

    /// The inner writer and the digest of what went through.
    pub(crate) fn into_parts(self) -> (W, Digest) {
        (self.inner, self.digest)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.digest.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Passes reads from `inner`, hashing them.
#[derive(Debug)]
pub(crate) struct HashingReader<R> {
    inner: R,
    pub(crate) digest: Digest,
}

impl<R> HashingReader<R> {
    pub(crate) fn new(inner: R) -> HashingReader<R> {
        HashingReader {
            inner,
            digest: Digest::default(),
        }
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.digest.update(&buf[..n]);
        Ok(n)
    }
}

/// Copy `input` to `output` through a 1 MiB buffer, hashing what passes.
fn copy_hashed(input: &mut dyn Read, output: &mut dyn Write) -> io::Result<Digest> {
    let mut digest = Digest::default();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = match input.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        digest.update(&buffer[..n]);
        output.write_all(&buffer[..n])?;
    }
    Ok(digest)
}

/// Encode `input` (a backup file) into `output` as `encoding` says; returns `output` and the
/// digest of the plain bytes read.
pub(crate) fn encode<W: Write>(
    input: &mut dyn Read,
    output: W,
    encoding: &Encoding,
) -> io::Result<(W, Digest)> {
    let recipients = encoding.recipients.iter().map(|r| r as &dyn age::Recipient);
    match (encoding.compression, encoding.recipients.is_empty()) {
        (Compression::None, true) => {
            let mut output = output;
            let digest = copy_hashed(input, &mut output)?;
            Ok((output, digest))
        }
        (Compression::Zstd, true) => {
            let mut zstd = zstd::Encoder::new(output, encoding.level)?;
            let digest = copy_hashed(input, &mut zstd)?;
            Ok((zstd.finish()?, digest))
        }
        (Compression::None, false) => {
            let mut age = age::Encryptor::with_recipients(recipients)
                .map_err(io::Error::other)?
                .wrap_output(output)?;
            let digest = copy_hashed(input, &mut age)?;
            Ok((age.finish()?, digest))
        }
        (Compression::Zstd, false) => {
            let age = age::Encryptor::with_recipients(recipients)
                .map_err(io::Error::other)?
                .wrap_output(output)?;
            let mut zstd = zstd::Encoder::new(age, encoding.level)?;
            let digest = copy_hashed(input, &mut zstd)?;
            Ok((zstd.finish()?.finish()?, digest))
        }
    }
}

/// Why an object did not decode.
#[derive(Debug)]
pub(crate) enum DecodeError {
    /// Reading, decrypting, decompressing or writing failed.
    Io(io::Error),
    /// The age header did not open with the identities.
    Decrypt(age::DecryptError),
    /// The object is encrypted and there is no identity.
    NoIdentity,
}

/// Decode `input` (an object) into `output`; returns the digest of the plain bytes written.
pub(crate) fn decode(
    input: &mut dyn Read,
    output: &mut dyn Write,
    compression: Compression,
    encryption: Encryption,
    identities: &[Box<dyn age::Identity + Send + Sync>],
) -> Result<Digest, DecodeError> {
    let mut decrypted: Box<dyn Read + '_> = match encryption {
        Encryption::None => Box::new(input),
        Encryption::AgeX25519 => {
            if identities.is_empty() {
                return Err(DecodeError::NoIdentity);
            }
            let decryptor = age::Decryptor::new(input).map_err(DecodeError::Decrypt)?;
            let reader = decryptor
                .decrypt(identities.iter().map(|i| i.as_ref() as &dyn age::Identity))
                .map_err(DecodeError::Decrypt)?;
            Box::new(reader)
        }
    };
    let digest = match compression {
        Compression::None => copy_hashed(&mut decrypted, output),
        Compression::Zstd => {
            let mut zstd = zstd::Decoder::new(decrypted).map_err(DecodeError::Io)?;
            copy_hashed(&mut zstd, output)
        }
    };
    digest.map_err(DecodeError::Io)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(compression: Compression, encrypt: bool) {
        let identity = age::x25519::Identity::generate();
        let encoding = Encoding {
            compression,
            level: 3,
            recipients: if encrypt {
                vec![identity.to_public()]
            } else {
                Vec::new()
            },
        };
        let plain: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let (object, digest) = encode(&mut plain.as_slice(), Vec::new(), &encoding).unwrap();
        assert_eq!(digest.bytes, plain.len() as u64);
        assert_ne!(object, plain);
        let identities: Vec<Box<dyn age::Identity + Send + Sync>> = vec![Box::new(identity)];
        let mut back = Vec::new();
        let decoded = decode(
            &mut object.as_slice(),
            &mut back,
            compression,
            encoding.encryption(),
            &identities,
        )
        .map_err(|e| format!("{e:?}"))
        .unwrap();
        assert_eq!(back, plain);
        assert_eq!(decoded.hex(), digest.hex());
    }

    #[test]
    fn every_encoding_round_trips() {
        round_trip(Compression::Zstd, false);
        round_trip(Compression::Zstd, true);
        round_trip(Compression::None, true);
    }
}
