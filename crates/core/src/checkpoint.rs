//! Signed checkpoints: C2SP `tlog-checkpoint` bodies inside C2SP `signed-note`s, Ed25519 keys.
//!
//! A checkpoint states "the log `origin` had `size` leaves with Merkle root `root`" (see
//! [`crate::merkle`]). The server signs it as a note; auditors and standard transparency-log
//! tooling verify it with a verifier key of the form `<name>+<key id hex>+<base64(0x01 ‖ key)>`,
//! the format of Go's `golang.org/x/mod/sumdb/note`.
//!
//! ```text
//! example.com/mandate/tenant-1          ← origin
//! 4                                     ← tree size, decimal
//! Zm9v...=                              ← root hash, standard padded base64
//!                                       ← blank line
//! — example.com/mandate <base64(key id ‖ Ed25519 signature of the three lines above)>
//! ```
//!
//! Verification ignores signatures by unknown keys (witness cosignatures, rotated keys), rejects
//! the whole note if a trusted key's signature fails, and requires at least one trusted one.
//! Keys are passed in; nothing here generates or stores them.
//!
//! ```
//! use ed25519_dalek::SigningKey;
//! use mandate_core::checkpoint::{verify, Checkpoint, NoteSigner, NoteVerifier};
//! use mandate_core::merkle::{leaf_hash, MemoryTree};
//!
//! let tree = MemoryTree::from_leaf_hashes([leaf_hash(b"receipt 0")]).unwrap();
//! let checkpoint = Checkpoint::new("example.com/log", 1, tree.root().unwrap(), vec![]).unwrap();
//! let signer = NoteSigner::new("example.com/log", SigningKey::from_bytes(&[7u8; 32])).unwrap();
//! let note = signer.sign_checkpoint(&checkpoint).unwrap();
//!
//! let trusted = NoteVerifier::parse(&signer.verifier().to_string()).unwrap();
//! let (body, opened) = verify(note.as_bytes(), &[trusted]).unwrap();
//! assert_eq!(opened, checkpoint);
//! assert_eq!(body, checkpoint.to_body());
//! ```

use std::fmt;

use base64ct::{Base64, Encoding};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::merkle::Hash;

/// Notes longer than this (1 MiB) are refused before any parsing.
pub const MAX_NOTE_LEN: usize = 1 << 20;

/// Notes with more signature lines than this are refused.
pub const MAX_SIGNATURES: usize = 100;

/// A tree head: the log `origin` had `size` leaves with Merkle root `root`.
///
/// Built by [`Checkpoint::new`] or [`Checkpoint::parse_body`], so it always has a body that
/// [`Checkpoint::parse_body`] reads back to the same value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    origin: String,
    size: u64,
    root: Hash,
    extensions: Vec<String>,
}

/// A note signing key: a key name and an Ed25519 key.
pub struct NoteSigner {
    name: String,
    key_id: u32,
    signing_key: SigningKey,
}

/// A trusted note verifier key: a key name, its key id and an Ed25519 public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    key_id: u32,
    key: VerifyingKey,
}

/// A note whose text carries at least one valid signature by a trusted key.
/// Only [`open_note`] builds one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedNote {
    body: String,
    signers: Vec<(String, u32)>,
}

/// Why a checkpoint, note or key was refused. Messages are safe to show to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The note is longer than [`MAX_NOTE_LEN`].
    #[error("note is {len} bytes, over the 1 MiB limit")]
    TooLarge {
        /// Length of the refused note.
        len: usize,
    },
    /// Not UTF-8, or holds an ASCII control character other than newline.
    #[error("note is not UTF-8 text free of control characters other than newline")]
    NotText,
    /// No blank line followed by signature lines.
    #[error("note has no blank line followed by signature lines")]
    NoSignatureBlock,
    /// A signature line is not `— <key name> <base64>` ending in a newline.
    #[error("signature line {line} is malformed")]
    MalformedSignatureLine {
        /// 1-based position among the signature lines.
        line: usize,
    },
    /// More than [`MAX_SIGNATURES`] signature lines.
    #[error("note has more than 100 signatures")]
    TooManySignatures,
    /// A trusted key's signature does not verify: the whole note is refused.
    #[error("signature by key `{name}+{key_id:08x}` does not verify")]
    BadSignature {
        /// Key name.
        name: String,
        /// Key id.
        key_id: u32,
    },
    /// Two different trusted keys share a name and key id.
    #[error("two different trusted keys are named `{name}+{key_id:08x}`")]
    AmbiguousKey {
        /// Key name.
        name: String,
        /// Key id.
        key_id: u32,
    },
    /// Every signature is by an unknown key, or there is none.
    #[error("note has no signature by a trusted key")]
    NoTrustedSignature,
    /// Note text or checkpoint body that does not end in a newline.
    #[error("note text does not end in a newline")]
    BodyWithoutNewline,
    /// The text is not a checkpoint body.
    #[error("malformed checkpoint: {0}")]
    MalformedCheckpoint(&'static str),
    /// A key name that is empty or contains a Unicode space or `+`.
    #[error("key name must be non-empty and contain no spaces or `+`")]
    InvalidKeyName,
    /// A verifier key that is not `<name>+<8 hex digits>+<base64>`.
    #[error("malformed verifier key: {0}")]
    MalformedVerifierKey(&'static str),
    /// The key id in a verifier key is not the one its name and public key give.
    #[error("verifier key id does not match its name and public key")]
    KeyIdMismatch,
    /// A signature type other than Ed25519 (`0x01`).
    #[error("unsupported signature type {0:#04x}: only Ed25519 (0x01) is accepted")]
    UnsupportedAlgorithm(u8),
    /// A public key of small order, which would accept forged signatures.
    #[error("public key is a weak (small-order) Ed25519 point")]
    WeakKey,
}

/// C2SP signed-note, "Signatures": the Ed25519 signature type identifier byte.
const ED25519_TYPE: u8 = 0x01;
/// C2SP signed-note, "Format": "em dash (U+2014), space (U+0020)".
const SIGNATURE_PREFIX: &str = "\u{2014} ";

impl Checkpoint {
    /// A checkpoint, if its body can be written: `origin` must be non-empty and every
    /// extension line non-empty, all without newlines or other control characters.
    pub fn new(
        origin: impl Into<String>,
        size: u64,
        root: Hash,
        extensions: Vec<String>,
    ) -> Result<Self, CheckpointError> {
        let origin = origin.into();
        check_line(&origin, "the origin line is empty")?;
        for line in &extensions {
            check_line(line, "an extension line is empty")?;
        }
        Ok(Self {
            origin,
            size,
            root,
            extensions,
        })
    }

    /// The log identity that issued the checkpoint.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Number of leaves in the tree.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Merkle root of the tree at [`Checkpoint::size`] leaves.
    pub fn root(&self) -> &Hash {
        &self.root
    }

    /// Extension lines, usually none.
    pub fn extensions(&self) -> &[String] {
        &self.extensions
    }

    /// The note text.
    ///
    /// C2SP tlog-checkpoint, "Note text": "1. The first line is the origin [...] 2. The second
    /// line is the tree size, the ASCII decimal representation of the number of leaves in the
    /// tree, with no leading zeroes (unless the tree is empty, in which case the tree size is
    /// `0`). 3. The third line is the root hash, the base64 encoding of the root of the
    /// [RFC 6962] Merkle hash tree at the specified tree size. 4. Any following lines are
    /// extension lines". Every line ends in a newline.
    pub fn to_body(&self) -> String {
        let mut body = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            self.root.to_base64()
        );
        for line in &self.extensions {
            body.push_str(line);
            body.push('\n');
        }
        body
    }

    /// Parses a note text as a checkpoint, strictly: the inverse of [`Checkpoint::to_body`].
    ///
    /// C2SP tlog-checkpoint, "Note text": "The note text is a sequence of at least three
    /// non-empty lines, separated by newlines (U+000A)." The origin "MUST be non-empty"; the
    /// tree size has "no leading zeroes"; extension lines, if any, "MUST be non-empty".
    pub fn parse_body(body: &str) -> Result<Self, CheckpointError> {
        let text = body
            .strip_suffix('\n')
            .ok_or(CheckpointError::BodyWithoutNewline)?;
        let mut lines = text.split('\n');
        let (Some(origin), Some(size), Some(root)) = (lines.next(), lines.next(), lines.next())
        else {
            return Err(CheckpointError::MalformedCheckpoint(
                "fewer than three lines",
            ));
        };
        let size = parse_size(size)?;
        let root = Hash::from_base64(root).ok_or(CheckpointError::MalformedCheckpoint(
            "the root hash is not 32 bytes of canonical standard base64",
        ))?;
        Self::new(origin, size, root, lines.map(str::to_owned).collect())
    }
}

impl NoteSigner {
    /// A signer for the key named `name`.
    ///
    /// C2SP signed-note: "Key names MUST be non-empty and MUST NOT contain any Unicode spaces or
    /// plus (U+002B) characters."
    pub fn new(name: &str, signing_key: SigningKey) -> Result<Self, CheckpointError> {
        check_key_name(name)?;
        let key_id = key_id(name, &signing_key.verifying_key());
        Ok(Self {
            name: name.to_owned(),
            key_id,
            signing_key,
        })
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key id.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The verifier for this key, to publish (its `Display` is the verifier key string).
    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier {
            name: self.name.clone(),
            key_id: self.key_id,
            key: self.signing_key.verifying_key(),
        }
    }

    /// The signed note: `body`, a blank line and one signature line.
    ///
    /// C2SP signed-note, "Format": "A signed note consists of a text ending in newline
    /// (U+000A), followed by a blank line (only a newline), followed by one or more signature
    /// lines of this form: em dash (U+2014), space (U+0020), key name, space, base64-encoded
    /// signature, newline." "Signatures are the base64 encoding of 4+n bytes. The first four
    /// bytes in the signature are the uint32 key ID stored in big-endian order. The remaining n
    /// bytes are the result of using the specified key to sign the note text".
    /// "Ed25519 signatures are generated according to [RFC 8032] over the note text."
    pub fn sign(&self, body: &str) -> Result<String, CheckpointError> {
        if !body.ends_with('\n') {
            return Err(CheckpointError::BodyWithoutNewline);
        }
        check_text(body)?;
        let signature = self.signing_key.sign(body.as_bytes());
        let mut raw = Vec::with_capacity(4 + 64);
        raw.extend_from_slice(&self.key_id.to_be_bytes());
        raw.extend_from_slice(&signature.to_bytes());
        let note = format!(
            "{body}\n{SIGNATURE_PREFIX}{} {}\n",
            self.name,
            Base64::encode_string(&raw)
        );
        if note.len() > MAX_NOTE_LEN {
            return Err(CheckpointError::TooLarge { len: note.len() });
        }
        Ok(note)
    }

    /// The signed note of `checkpoint`'s body.
    pub fn sign_checkpoint(&self, checkpoint: &Checkpoint) -> Result<String, CheckpointError> {
        self.sign(&checkpoint.to_body())
    }
}

impl fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NoteSigner")
            .field("name", &self.name)
            .field("key_id", &format_args!("{:08x}", self.key_id))
            .finish_non_exhaustive()
    }
}

impl NoteVerifier {
    /// The verifier for the Ed25519 `key` named `name`.
    pub fn new(name: &str, key: VerifyingKey) -> Result<Self, CheckpointError> {
        check_key_name(name)?;
        if key.is_weak() {
            return Err(CheckpointError::WeakKey);
        }
        Ok(Self {
            name: name.to_owned(),
            key_id: key_id(name, &key),
            key,
        })
    }

    /// Parses a verifier key `<name>+<key id as 8 hex digits>+<base64(0x01 ‖ 32-byte key)>`.
    ///
    /// The format of golang.org/x/mod/sumdb/note `NewVerifier`: the key id must be
    /// `SHA-256(name ‖ "\n" ‖ 0x01 ‖ key)[:4]`, and the key a valid, non-weak Ed25519 point.
    pub fn parse(vkey: &str) -> Result<Self, CheckpointError> {
        use CheckpointError::MalformedVerifierKey as Malformed;
        let (name, rest) = vkey.split_once('+').ok_or(Malformed("missing `+`"))?;
        let (id_hex, key_b64) = rest.split_once('+').ok_or(Malformed("missing `+`"))?;
        check_key_name(name)?;
        if id_hex.len() != 8 || !id_hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Malformed("the key id is not 8 hex digits"));
        }
        let claimed_id =
            u32::from_str_radix(id_hex, 16).map_err(|_| Malformed("the key id is not hex"))?;
        let typed_key =
            decode_base64(key_b64).ok_or(Malformed("the key is not standard base64"))?;
        if typed_key.is_empty() {
            return Err(Malformed("the key is empty"));
        }
        // As in Go's NewVerifier: the id covers the type byte, so it is checked first.
        if claimed_id != key_id_of_typed_key(name, &typed_key) {
            return Err(CheckpointError::KeyIdMismatch);
        }
        let Some((&key_type, key)) = typed_key.split_first() else {
            return Err(Malformed("the key is empty"));
        };
        if key_type != ED25519_TYPE {
            return Err(CheckpointError::UnsupportedAlgorithm(key_type));
        }
        let key: &[u8; 32] = key
            .try_into()
            .map_err(|_| Malformed("an Ed25519 key is 32 bytes"))?;
        let key = VerifyingKey::from_bytes(key)
            .map_err(|_| Malformed("the key is not an Ed25519 point"))?;
        Self::new(name, key)
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key id.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The Ed25519 public key.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.key
    }
}

/// The verifier key string, `<name>+<key id>+<base64(0x01 ‖ key)>`.
impl fmt::Display for NoteVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut typed = Vec::with_capacity(33);
        typed.push(ED25519_TYPE);
        typed.extend_from_slice(self.key.as_bytes());
        write!(
            f,
            "{}+{:08x}+{}",
            self.name,
            self.key_id,
            Base64::encode_string(&typed)
        )
    }
}

impl VerifiedNote {
    /// The note text (the checkpoint body), ending in a newline.
    pub fn body(&self) -> &str {
        &self.body
    }

    /// Name and key id of each trusted key whose signature verified, in note order.
    pub fn signers(&self) -> &[(String, u32)] {
        &self.signers
    }

    /// The note text.
    pub fn into_body(self) -> String {
        self.body
    }
}

/// Verifies a signed note against the trusted `verifiers` and returns its text.
///
/// C2SP signed-note, "Signatures": "Verifiers MUST ignore signatures from unknown keys, even if
/// they share a name or ID (but not both) with a known key. If the key name and ID match a known
/// key, verifiers MUST verify the signature. If a signature from a known key fails to verify,
/// clients SHOULD reject the whole note. If no signature from a known key verifies successfully,
/// clients MUST reject the note." We reject the whole note in the SHOULD case too.
pub fn open_note(note: &[u8], verifiers: &[NoteVerifier]) -> Result<VerifiedNote, CheckpointError> {
    if note.len() > MAX_NOTE_LEN {
        return Err(CheckpointError::TooLarge { len: note.len() });
    }
    let text = std::str::from_utf8(note).map_err(|_| CheckpointError::NotText)?;
    check_text(text)?;
    // "the text is separated from the signatures by the last empty line in the note."
    let split = text
        .rfind("\n\n")
        .ok_or(CheckpointError::NoSignatureBlock)?;
    let (body, signatures) = (&text[..=split], &text[split + 2..]);
    if signatures.is_empty() {
        return Err(CheckpointError::NoSignatureBlock);
    }
    let count = signatures.split_terminator('\n').count();
    if count > MAX_SIGNATURES {
        return Err(CheckpointError::TooManySignatures);
    }
    if !signatures.ends_with('\n') {
        return Err(CheckpointError::MalformedSignatureLine { line: count });
    }
    let mut signers: Vec<(String, u32)> = Vec::new();
    for (i, line) in signatures.split_terminator('\n').enumerate() {
        let (name, key_id, signature) = parse_signature_line(line)
            .ok_or(CheckpointError::MalformedSignatureLine { line: i + 1 })?;
        let Some(verifier) = trusted_key(verifiers, name, key_id)? else {
            continue;
        };
        let valid = <[u8; 64]>::try_from(signature).is_ok_and(|bytes| {
            verifier
                .key
                .verify_strict(body.as_bytes(), &Signature::from_bytes(&bytes))
                .is_ok()
        });
        if !valid {
            return Err(CheckpointError::BadSignature {
                name: name.to_owned(),
                key_id,
            });
        }
        if !signers.iter().any(|(n, id)| n == name && *id == key_id) {
            signers.push((name.to_owned(), key_id));
        }
    }
    if signers.is_empty() {
        return Err(CheckpointError::NoTrustedSignature);
    }
    Ok(VerifiedNote {
        body: body.to_owned(),
        signers,
    })
}

/// Verifies a signed checkpoint: [`open_note`], then [`Checkpoint::parse_body`] on its text.
/// Returns the text and the checkpoint it holds.
pub fn verify(
    note: &[u8],
    verifiers: &[NoteVerifier],
) -> Result<(String, Checkpoint), CheckpointError> {
    let body = open_note(note, verifiers)?.into_body();
    let checkpoint = Checkpoint::parse_body(&body)?;
    Ok((body, checkpoint))
}

/// C2SP signed-note: "key ID = SHA-256(key name || 0x0A || 0x01 || 32-byte Ed25519 public
/// key)[:4]", read as a big-endian uint32.
fn key_id(name: &str, key: &VerifyingKey) -> u32 {
    let mut typed = [0u8; 33];
    typed[0] = ED25519_TYPE;
    typed[1..].copy_from_slice(key.as_bytes());
    key_id_of_typed_key(name, &typed)
}

fn key_id_of_typed_key(name: &str, typed_key: &[u8]) -> u32 {
    let digest: [u8; 32] = Sha256::new()
        .chain_update(name.as_bytes())
        .chain_update(b"\n")
        .chain_update(typed_key)
        .finalize()
        .into();
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// `— <name> <base64(key id ‖ signature)>` → name, key id, signature bytes.
fn parse_signature_line(line: &str) -> Option<(&str, u32, Vec<u8>)> {
    let (name, encoded) = line.strip_prefix(SIGNATURE_PREFIX)?.split_once(' ')?;
    check_key_name(name).ok()?;
    let raw = decode_base64(encoded)?;
    // At least the 4-byte key id and one signature byte, as in Go's note.Open.
    if raw.len() < 5 {
        return None;
    }
    let (id, signature) = raw.split_at(4);
    let key_id = u32::from_be_bytes(id.try_into().ok()?);
    Some((name, key_id, signature.to_vec()))
}

/// The trusted key for `(name, key_id)`, if any; refuses two different keys under one name.
fn trusted_key<'a>(
    verifiers: &'a [NoteVerifier],
    name: &str,
    key_id: u32,
) -> Result<Option<&'a NoteVerifier>, CheckpointError> {
    let mut matching = verifiers
        .iter()
        .filter(|v| v.name == name && v.key_id == key_id);
    let first = matching.next();
    if let Some(first) = first
        && matching.any(|other| other.key != first.key)
    {
        return Err(CheckpointError::AmbiguousKey {
            name: name.to_owned(),
            key_id,
        });
    }
    Ok(first)
}

/// Strict standard padded base64: canonical spellings only.
fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let bytes = Base64::decode_vec(s).ok()?;
    (Base64::encode_string(&bytes) == s).then_some(bytes)
}

fn check_key_name(name: &str) -> Result<(), CheckpointError> {
    if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c == '+') {
        return Err(CheckpointError::InvalidKeyName);
    }
    Ok(())
}

/// C2SP signed-note: "Signed notes MUST be valid UTF-8 and MUST NOT contain any ASCII control
/// characters (those below U+0020) other than newline."
fn check_text(text: &str) -> Result<(), CheckpointError> {
    if text.bytes().any(|b| b < 0x20 && b != b'\n') {
        return Err(CheckpointError::NotText);
    }
    Ok(())
}

/// One checkpoint line: non-empty, no control characters (so no newline either).
fn check_line(line: &str, empty: &'static str) -> Result<(), CheckpointError> {
    if line.is_empty() {
        return Err(CheckpointError::MalformedCheckpoint(empty));
    }
    if line.bytes().any(|b| b < 0x20) {
        return Err(CheckpointError::MalformedCheckpoint(
            "a line holds a control character",
        ));
    }
    Ok(())
}

/// "the ASCII decimal representation of the number of leaves in the tree, with no leading
/// zeroes (unless the tree is empty, in which case the tree size is `0`)."
fn parse_size(line: &str) -> Result<u64, CheckpointError> {
    use CheckpointError::MalformedCheckpoint as Malformed;
    if line.is_empty() || !line.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Malformed("the tree size is not a decimal number"));
    }
    if line.len() > 1 && line.starts_with('0') {
        return Err(Malformed("the tree size has a leading zero"));
    }
    line.parse()
        .map_err(|_| Malformed("the tree size does not fit in 64 bits"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_different_trusted_keys_under_one_name_and_id_are_refused() {
        let signer = NoteSigner::new("log", SigningKey::from_bytes(&[1u8; 32])).unwrap();
        // A 32-bit key id collision, which the public constructors cannot build.
        let twin = NoteVerifier {
            name: "log".to_owned(),
            key_id: signer.key_id(),
            key: SigningKey::from_bytes(&[2u8; 32]).verifying_key(),
        };
        let note = signer.sign("text\n").unwrap();
        assert_eq!(
            open_note(note.as_bytes(), &[signer.verifier(), twin]),
            Err(CheckpointError::AmbiguousKey {
                name: "log".to_owned(),
                key_id: signer.key_id()
            })
        );
        assert!(open_note(note.as_bytes(), &[signer.verifier(), signer.verifier()]).is_ok());
    }

    #[test]
    fn weak_keys_are_refused() {
        // The identity point: small order, accepts forged signatures under cofactored checks.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let key = VerifyingKey::from_bytes(&identity).unwrap();
        assert_eq!(NoteVerifier::new("log", key), Err(CheckpointError::WeakKey));
        let mut typed = vec![ED25519_TYPE];
        typed.extend_from_slice(&identity);
        let vkey = format!(
            "log+{:08x}+{}",
            key_id_of_typed_key("log", &typed),
            Base64::encode_string(&typed)
        );
        assert_eq!(NoteVerifier::parse(&vkey), Err(CheckpointError::WeakKey));
    }
}
