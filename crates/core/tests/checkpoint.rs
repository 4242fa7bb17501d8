//! Signed checkpoints against the golang.org/x/mod/sumdb/note vectors and the C2SP examples.
//!
//! - `sumdb_note.json`: the "PeterNeumann" key pair, its signed note and a second signer
//!   ("EnochRoot", verifier key and signature only), from Go's `note_test.go`. We must parse the
//!   verifier keys, verify the note, and sign the text into the byte-identical note (Ed25519 is
//!   deterministic). The negative cases of `TestNewVerifier` and `TestOpen` are rebuilt here
//!   exactly as the Go test builds them.
//! - `c2sp_examples.json`: the examples of the C2SP `tlog-checkpoint` and `signed-note` specs
//!   (no public keys are published for them, so they are parsed, not verified).
//!
//! Provenance: `testdata/vectors/checkpoint/SOURCE.md`.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers outside #[test] functions: a failed unwrap is a failed test"
)]

use std::fs;
use std::path::Path;

use base64ct::{Base64, Encoding};
use ed25519_dalek::SigningKey;
use mandate_core::checkpoint::{
    Checkpoint, CheckpointError, MAX_NOTE_LEN, NoteSigner, NoteVerifier, open_note, verify,
};
use mandate_core::merkle::{Hash, leaf_hash};
use serde_json::Value;

fn load(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/vectors/checkpoint")
        .join(name);
    let text =
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn s<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    let mut v = v;
    for key in path {
        v = &v[*key];
    }
    v.as_str()
        .unwrap_or_else(|| panic!("{} is not a string", path.join(".")))
}

struct Go {
    doc: Value,
}

impl Go {
    fn load() -> Self {
        Self {
            doc: load("sumdb_note.json"),
        }
    }
    fn text(&self) -> &str {
        s(&self.doc, &["text"])
    }
    fn peter_sig(&self) -> &str {
        s(&self.doc, &["peter", "signature_line"])
    }
    fn enoch_sig(&self) -> &str {
        s(&self.doc, &["enoch", "signature_line"])
    }
    fn peter(&self) -> NoteVerifier {
        NoteVerifier::parse(s(&self.doc, &["peter", "verifier_key"])).unwrap()
    }
    fn enoch(&self) -> NoteVerifier {
        NoteVerifier::parse(s(&self.doc, &["enoch", "verifier_key"])).unwrap()
    }
    /// Decodes Go's `PRIVATE+KEY+<name>+<id>+<base64(0x01 ‖ seed)>`.
    fn peter_signer(&self) -> NoteSigner {
        let skey = s(&self.doc, &["peter", "signer_key"]);
        let parts: Vec<&str> = skey.splitn(5, '+').collect();
        assert_eq!(parts[..2], ["PRIVATE", "KEY"]);
        let raw = Base64::decode_vec(parts[4]).unwrap();
        assert_eq!(raw[0], 0x01, "Ed25519");
        let seed: [u8; 32] = raw[1..].try_into().unwrap();
        let signer = NoteSigner::new(parts[2], SigningKey::from_bytes(&seed)).unwrap();
        assert_eq!(format!("{:08x}", signer.key_id()), parts[3]);
        signer
    }
}

#[test]
fn parses_the_go_verifier_keys() {
    let go = Go::load();
    for who in ["peter", "enoch"] {
        let vkey = s(&go.doc, &[who, "verifier_key"]);
        let v = NoteVerifier::parse(vkey).unwrap();
        assert_eq!(v.name(), s(&go.doc, &[who, "name"]));
        assert_eq!(format!("{:08x}", v.key_id()), s(&go.doc, &[who, "key_id"]));
        assert_eq!(v.to_string(), vkey, "the key string round-trips");
        assert_eq!(NoteVerifier::new(v.name(), *v.verifying_key()), Ok(v));
    }
}

#[test]
fn refuses_the_go_bad_verifier_keys() {
    let go = Go::load();
    let bad = go.doc["bad_verifier_keys"].as_array().unwrap();
    let wrong_length = NoteVerifier::parse(s(&bad[0], &["key"]));
    assert!(
        matches!(wrong_length, Err(CheckpointError::MalformedVerifierKey(_))),
        "{wrong_length:?}"
    );
    let unknown_algorithm = NoteVerifier::parse(s(&bad[1], &["key"]));
    assert_eq!(
        unknown_algorithm,
        Err(CheckpointError::UnsupportedAlgorithm(0x65))
    );
}

/// Go's TestNewVerifier: every proper substring and every single-byte increment is refused.
#[test]
fn refuses_every_mangling_of_a_verifier_key() {
    let go = Go::load();
    let vkey = s(&go.doc, &["peter", "verifier_key"]).as_bytes().to_vec();
    let refused = |bytes: &[u8]| match std::str::from_utf8(bytes) {
        Ok(text) => NoteVerifier::parse(text).is_err(),
        Err(_) => true,
    };
    let mut tried = 0;
    for i in 0..=vkey.len() {
        for j in i + 1..=vkey.len() {
            if (i, j) != (0, vkey.len()) {
                assert!(refused(&vkey[i..j]), "accepted {:?}", &vkey[i..j]);
                tried += 1;
            }
        }
    }
    for i in 0..vkey.len() {
        let mut mangled = vkey.clone();
        mangled[i] += 1;
        assert!(refused(&mangled), "accepted {mangled:?}");
        tried += 1;
    }
    assert_eq!(tried, 66 * 67 / 2 - 1 + 66);
}

#[test]
fn verifies_the_go_signed_note() {
    let go = Go::load();
    let note = s(&go.doc, &["signed_note"]);
    let opened = open_note(note.as_bytes(), &[go.peter()]).unwrap();
    assert_eq!(opened.body(), go.text());
    assert_eq!(opened.signers(), [("PeterNeumann".to_owned(), 0xc74f20a3)]);
}

#[test]
fn signs_the_go_text_byte_for_byte() {
    let go = Go::load();
    let signer = go.peter_signer();
    assert_eq!(signer.name(), "PeterNeumann");
    assert_eq!(signer.verifier(), go.peter());
    assert_eq!(
        signer.verifier().to_string(),
        s(&go.doc, &["peter", "verifier_key"])
    );
    let note = signer.sign(go.text()).unwrap();
    assert_eq!(note, s(&go.doc, &["signed_note"]));
    assert_eq!(note, format!("{}\n{}", go.text(), go.peter_sig()));
}

/// Go's TestOpen, case by case.
#[test]
fn opens_notes_like_go() {
    let go = Go::load();
    let (text, peter_sig, enoch_sig) = (go.text(), go.peter_sig(), go.enoch_sig());
    let both = format!("{text}\n{peter_sig}{enoch_sig}");
    let peter_id = ("PeterNeumann".to_owned(), 0xc74f20a3);
    let enoch_id = ("EnochRoot".to_owned(), 0xaf0cfe78);

    // One signature verified, the unknown one ignored.
    let opened = open_note(both.as_bytes(), &[go.peter()]).unwrap();
    assert_eq!(opened.body(), text);
    assert_eq!(opened.signers(), std::slice::from_ref(&peter_id));
    // Both verified.
    let opened = open_note(both.as_bytes(), &[go.peter(), go.enoch()]).unwrap();
    assert_eq!(opened.signers(), [peter_id.clone(), enoch_id.clone()]);
    // Neither trusted.
    assert_eq!(
        open_note(both.as_bytes(), &[]),
        Err(CheckpointError::NoTrustedSignature)
    );
    // The same verifier listed twice is not ambiguous.
    let opened = open_note(both.as_bytes(), &[go.enoch(), go.peter(), go.enoch()]).unwrap();
    assert_eq!(opened.signers(), [peter_id.clone(), enoch_id]);

    // Too many signatures.
    let many = format!("{text}\n{}", peter_sig.repeat(101));
    for verifiers in [vec![go.peter()], vec![]] {
        assert_eq!(
            open_note(many.as_bytes(), &verifiers),
            Err(CheckpointError::TooManySignatures)
        );
    }
    let hundred = format!("{text}\n{}", peter_sig.repeat(100));
    assert!(open_note(hundred.as_bytes(), &[go.peter()]).is_ok());

    // Invalid signature by a trusted key.
    let tampered = format!("{}ABCD{}", &peter_sig[..60], &peter_sig[60..]);
    assert_eq!(
        open_note(format!("{text}\n{tampered}").as_bytes(), &[go.peter()]),
        Err(CheckpointError::BadSignature {
            name: "PeterNeumann".to_owned(),
            key_id: 0xc74f20a3
        })
    );

    // Duplicated verified and unverified signatures, one of them corrupt but unknown.
    let enoch_abcd = format!("{}ABCD{}", &enoch_sig[..60], &enoch_sig[60..]);
    let dup = format!("{text}\n{peter_sig}{peter_sig}{enoch_sig}{enoch_sig}{enoch_abcd}");
    let opened = open_note(dup.as_bytes(), &[go.peter()]).unwrap();
    assert_eq!(opened.signers(), [peter_id]);

    // Invalid encoded message syntax.
    let no_newline = &peter_sig[..peter_sig.len() - 1];
    let bad_name = "\u{2014} Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=";
    let cases: Vec<(Vec<u8>, CheckpointError)> = vec![
        (text.into(), CheckpointError::NoSignatureBlock),
        (
            format!("{text}\n").into(),
            CheckpointError::NoSignatureBlock,
        ),
        (
            format!("{text}\n{no_newline}").into(),
            CheckpointError::MalformedSignatureLine { line: 1 },
        ),
        (
            format!("\x01{text}\n{peter_sig}").into(),
            CheckpointError::NotText,
        ),
        (
            [
                b"\xff".as_slice(),
                format!("{text}\n{peter_sig}").as_bytes(),
            ]
            .concat(),
            CheckpointError::NotText,
        ),
        (
            format!("{text}\n{bad_name}").into(),
            CheckpointError::MalformedSignatureLine { line: 1 },
        ),
        (
            format!("{text}\n{peter_sig}Unexpected line.\n").into(),
            CheckpointError::MalformedSignatureLine { line: 2 },
        ),
    ];
    for (msg, want) in cases {
        assert_eq!(
            open_note(&msg, &[go.peter()]),
            Err(want),
            "{}",
            String::from_utf8_lossy(&msg)
        );
    }

    // A signature that names another key, or carries another key id, is by an unknown key.
    let misnamed = peter_sig.replace("PeterNeumann", "CarmenSandiego");
    let wrong_id = peter_sig.replace("x08g", "xxxx");
    for line in [misnamed, wrong_id] {
        assert_eq!(
            open_note(format!("{text}\n{line}").as_bytes(), &[go.peter()]),
            Err(CheckpointError::NoTrustedSignature)
        );
    }
}

#[test]
fn refuses_notes_over_one_mebibyte() {
    let go = Go::load();
    let signer = go.peter_signer();
    let filler = format!("{}\n", "x".repeat(MAX_NOTE_LEN));
    assert!(matches!(
        signer.sign(&filler),
        Err(CheckpointError::TooLarge { .. })
    ));
    let huge = format!("{filler}\n{}", go.peter_sig());
    assert_eq!(
        open_note(huge.as_bytes(), &[go.peter()]),
        Err(CheckpointError::TooLarge { len: huge.len() })
    );
}

#[test]
fn signing_refuses_text_that_is_not_a_note_text() {
    let signer = Go::load().peter_signer();
    assert_eq!(
        signer.sign("no newline"),
        Err(CheckpointError::BodyWithoutNewline)
    );
    assert_eq!(signer.sign("tab\there\n"), Err(CheckpointError::NotText));
    for name in ["", "two words", "a+b", "nbsp\u{a0}"] {
        assert_eq!(
            NoteSigner::new(name, SigningKey::from_bytes(&[1u8; 32])).map(|_| ()),
            Err(CheckpointError::InvalidKeyName),
            "{name:?}"
        );
    }
}

#[test]
fn parses_the_c2sp_examples() {
    let doc = load("c2sp_examples.json");
    let note = s(&doc, &["checkpoint_note"]);
    // No key is published for the example: well-formed, but nothing is trusted.
    assert_eq!(
        verify(note.as_bytes(), &[]),
        Err(CheckpointError::NoTrustedSignature)
    );
    let body = &note[..note.find("\n\n").unwrap() + 1];
    let checkpoint = Checkpoint::parse_body(body).unwrap();
    assert_eq!(checkpoint.origin(), s(&doc, &["checkpoint", "origin"]));
    assert_eq!(
        checkpoint.size(),
        doc["checkpoint"]["size"].as_u64().unwrap()
    );
    assert_eq!(
        checkpoint.root().to_base64(),
        s(&doc, &["checkpoint", "root_base64"])
    );
    assert!(checkpoint.extensions().is_empty());
    assert_eq!(checkpoint.to_body(), body);

    // The signed-note example's text has an empty line of its own: the signatures start after
    // the last one. Countersign it with our key to see which text the parser hands out.
    let example = s(&doc, &["signed_note"]);
    let text = s(&doc, &["signed_note_text"]);
    let ours = NoteSigner::new("example.com/ours", SigningKey::from_bytes(&[9u8; 32])).unwrap();
    let our_line = ours.sign(text).unwrap()[text.len() + 1..].to_owned();
    let both = format!("{example}{our_line}");
    let opened = open_note(both.as_bytes(), &[ours.verifier()]).unwrap();
    assert_eq!(opened.body(), text);
    assert_eq!(
        open_note(example.as_bytes(), &[ours.verifier()]),
        Err(CheckpointError::NoTrustedSignature)
    );
}

fn sample_checkpoint() -> Checkpoint {
    let root = leaf_hash(b"root");
    Checkpoint::new("example.com/mandate/t1", 42, root, vec![]).unwrap()
}

#[test]
fn signs_and_verifies_a_checkpoint() {
    let signer =
        NoteSigner::new("example.com/mandate", SigningKey::from_bytes(&[3u8; 32])).unwrap();
    let checkpoint = sample_checkpoint();
    let note = signer.sign_checkpoint(&checkpoint).unwrap();
    let vkey = signer.verifier().to_string();
    let trusted = [NoteVerifier::parse(&vkey).unwrap()];
    let (body, opened) = verify(note.as_bytes(), &trusted).unwrap();
    assert_eq!(opened, checkpoint);
    assert_eq!(body, checkpoint.to_body());
    assert_eq!(
        body,
        format!(
            "example.com/mandate/t1\n42\n{}\n",
            checkpoint.root().to_base64()
        )
    );

    // Any change to the body breaks the signature.
    let forged = note.replacen("\n42\n", "\n43\n", 1);
    assert_eq!(
        verify(forged.as_bytes(), &trusted),
        Err(CheckpointError::BadSignature {
            name: "example.com/mandate".to_owned(),
            key_id: signer.key_id()
        })
    );
    // Another key under the same name is a different (unknown) key.
    let impostor =
        NoteSigner::new("example.com/mandate", SigningKey::from_bytes(&[4u8; 32])).unwrap();
    let foreign = impostor.sign_checkpoint(&checkpoint).unwrap();
    assert_eq!(
        verify(foreign.as_bytes(), &trusted),
        Err(CheckpointError::NoTrustedSignature)
    );
    // A validly signed note that is not a checkpoint.
    let go = Go::load();
    assert!(matches!(
        verify(s(&go.doc, &["signed_note"]).as_bytes(), &[go.peter()]),
        Err(CheckpointError::MalformedCheckpoint(_))
    ));
}

#[test]
fn checkpoint_bodies_are_parsed_strictly() {
    let root = leaf_hash(b"root").to_base64();
    let ok = |body: &str| Checkpoint::parse_body(body);
    let cp = ok(&format!("o\n0\n{root}\n")).unwrap();
    assert_eq!((cp.origin(), cp.size()), ("o", 0));
    let cp = ok(&format!(
        "o\n18446744073709551615\n{root}\next one\next two\n"
    ))
    .unwrap();
    assert_eq!(cp.size(), u64::MAX);
    assert_eq!(cp.extensions(), ["ext one", "ext two"]);
    assert_eq!(
        cp.to_body(),
        format!("o\n18446744073709551615\n{root}\next one\next two\n")
    );

    let malformed = |body: String| {
        let result = Checkpoint::parse_body(&body);
        assert!(
            matches!(result, Err(CheckpointError::MalformedCheckpoint(_))),
            "{body:?}: {result:?}"
        );
    };
    assert_eq!(
        Checkpoint::parse_body(&format!("o\n1\n{root}")),
        Err(CheckpointError::BodyWithoutNewline)
    );
    for size in [
        "",
        "01",
        "00",
        "+1",
        "-1",
        " 1",
        "1 ",
        "0x1",
        "18446744073709551616",
        "１",
    ] {
        malformed(format!("o\n{size}\n{root}\n"));
    }
    let short = Base64::encode_string(&[7u8; 31]);
    let unpadded = root.trim_end_matches('=').to_owned();
    let noncanonical = format!("{}B=", &root[..42]);
    for bad_root in [
        short.as_str(),
        &unpadded,
        &noncanonical,
        "",
        &leaf_hash(b"root").to_hex(),
    ] {
        assert!(Hash::from_base64(bad_root).is_none(), "{bad_root:?}");
        malformed(format!("o\n1\n{bad_root}\n"));
    }
    malformed(format!("\n1\n{root}\n"));
    malformed("o\n1\n".to_owned());
    malformed(format!("o\n1\n{root}\n\n"));
    malformed(format!("o\n1\n{root}\next\n\nmore\n"));
    malformed(format!("o\tx\n1\n{root}\n"));

    let root = leaf_hash(b"root");
    for origin in ["", "two\nlines", "nul\0"] {
        assert!(
            Checkpoint::new(origin, 1, root, vec![]).is_err(),
            "{origin:?}"
        );
    }
    assert!(Checkpoint::new("o", 1, root, vec![String::new()]).is_err());
    assert!(Checkpoint::new("o", 1, root, vec!["a\nb".to_owned()]).is_err());
    // Origins are not key names: spaces and `+` are allowed (C2SP only recommends against them).
    assert!(Checkpoint::new("my log+1", 1, root, vec![]).is_ok());
}
