//! RFC 8785 (JCS) conformance against published vectors.
//!
//! - `input/*.json` → `output/*.json`: the reference vectors of cyberphone/json-canonicalization
//!   (the RFC author's repository); each output file is the exact canonical byte string.
//! - `outhex/*.txt`: the same outputs as hex, checking that the output files were stored intact.
//! - `rfc8785-*.{input,output}.json`: the examples of RFC 8785 §3.2.2–§3.2.3.
//! - `rfc8785-appendix-b.json`: RFC 8785 Appendix B, IEEE-754 bit patterns and their ES6 form.
//!
//! Provenance of every file: `testdata/vectors/jcs/SOURCE.md`.

use std::fs;
use std::path::{Path, PathBuf};

use mandate_core::jcs::{JcsError, MAX_SAFE_INTEGER, canonicalize};
use serde_json::{Number, Value};

/// Reference input/output pairs shipped in `input/` and `output/`.
const REFERENCE_PAIRS: usize = 7;
/// Finite rows of Appendix B (the other two, NaN and Infinity, are not JSON numbers).
const APPENDIX_B_FINITE: usize = 24;
const APPENDIX_B_REJECTED: usize = 2;

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/vectors/jcs")
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// Parses `input` and checks that its canonical form is byte-for-byte `expected`.
/// Returns a description of the mismatch, if any.
fn check_pair(name: &str, input: &[u8], expected: &[u8]) -> Option<String> {
    let value: Value = match serde_json::from_slice(input) {
        Ok(v) => v,
        Err(e) => return Some(format!("{name}: input does not parse: {e}")),
    };
    match canonicalize(&value) {
        Ok(got) if got.as_bytes() == expected => None,
        Ok(got) => Some(format!(
            "{name}:\n  expected {:?}\n  got      {:?}",
            String::from_utf8_lossy(expected),
            got
        )),
        Err(e) => Some(format!("{name}: canonicalize failed: {e}")),
    }
}

fn decode_hex(text: &str) -> Result<Vec<u8>, String> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !digits.len().is_multiple_of(2) {
        return Err("odd number of hex digits".to_owned());
    }
    digits
        .chunks(2)
        .map(|pair| {
            let s = std::str::from_utf8(pair).map_err(|e| format!("bad hex: {e}"))?;
            u8::from_str_radix(s, 16).map_err(|e| format!("bad hex {s:?}: {e}"))
        })
        .collect()
}

#[test]
fn reference_vectors_canonicalize_byte_exact() {
    let dir = vectors_dir();
    let mut names: Vec<String> = fs::read_dir(dir.join("input"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".json"))
        .collect();
    names.sort();

    let mut failures = Vec::new();
    for name in &names {
        let input = read(&dir.join("input").join(name)).unwrap();
        let expected = read(&dir.join("output").join(name)).unwrap();
        failures.extend(check_pair(name, &input, &expected));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(
        names.len(),
        REFERENCE_PAIRS,
        "vector set changed: {names:?}"
    );
}

#[test]
fn reference_outhex_matches_output_files() {
    let dir = vectors_dir();
    let mut checked = 0;
    for entry in fs::read_dir(dir.join("outhex")).unwrap() {
        let path = entry.unwrap().path();
        let stem = path.file_stem().unwrap().to_str().unwrap().to_owned();
        let hex = String::from_utf8(read(&path).unwrap()).unwrap();
        let output = read(&dir.join("output").join(format!("{stem}.json"))).unwrap();
        assert_eq!(decode_hex(&hex).unwrap(), output, "outhex/{stem}.txt");
        checked += 1;
    }
    assert!(checked > 0, "no outhex vectors found");
}

#[test]
fn rfc8785_examples_canonicalize_byte_exact() {
    let dir = vectors_dir();
    let mut failures = Vec::new();
    for name in ["rfc8785-example", "rfc8785-sorting"] {
        let input = read(&dir.join(format!("{name}.input.json"))).unwrap();
        let expected = read(&dir.join(format!("{name}.output.json"))).unwrap();
        failures.extend(check_pair(name, &input, &expected));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn rfc8785_appendix_b_numbers() {
    let path = vectors_dir().join("rfc8785-appendix-b.json");
    let rows: Vec<Value> = serde_json::from_slice(&read(&path).unwrap()).unwrap();

    let (mut finite, mut rejected) = (0, 0);
    let mut failures = Vec::new();
    for row in &rows {
        let hex = row["ieee_hex"].as_str().unwrap();
        let bits = u64::from_str_radix(hex, 16).unwrap();
        let f = f64::from_bits(bits);

        let Some(expected) = row["expected"].as_str() else {
            // NaN and Infinity: not JSON numbers, so JCS cannot be asked to serialise them.
            assert!(!f.is_finite(), "{hex}: no expected value but {f} is finite");
            assert!(
                Number::from_f64(f).is_none(),
                "{hex}: {f} became a JSON number"
            );
            rejected += 1;
            continue;
        };
        finite += 1;

        let number = Number::from_f64(f).unwrap_or_else(|| panic!("{hex}: {f} is not finite"));
        match canonicalize(&Value::Number(number)) {
            Ok(got) if got == expected => {}
            Ok(got) => failures.push(format!("{hex}: expected {expected}, got {got}")),
            Err(e) => failures.push(format!("{hex}: canonicalize failed: {e}")),
        }

        // The expected text read back as JSON canonicalises to itself -- except integers beyond
        // ±(2^53 - 1), which `canonicalize` refuses by design rather than rounding.
        let reparsed: Value = serde_json::from_str(expected).unwrap();
        let unsafe_integer = reparsed
            .as_u64()
            .map(|u| u > MAX_SAFE_INTEGER)
            .or_else(|| {
                reparsed
                    .as_i64()
                    .map(|i| i.unsigned_abs() > MAX_SAFE_INTEGER)
            })
            .unwrap_or(false);
        match canonicalize(&reparsed) {
            Err(JcsError::UnsafeInteger(_)) if unsafe_integer => {}
            Ok(got) if !unsafe_integer && got == expected => {}
            other => failures.push(format!(
                "{hex}: text {expected} re-canonicalised to {other:?}"
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!((finite, rejected), (APPENDIX_B_FINITE, APPENDIX_B_REJECTED));
}
