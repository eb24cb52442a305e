//! Where every random number comes from. A run has one seed; each network (and each
//! other consumer of randomness) derives its own stream from that seed and a stable
//! name for what it is (the unit's parameters, the member's index, the purpose), so
//! results never depend on ensemble size, order, threads or resumption.
//!
//! Unit ids and network seeds come from a [`Key`]: an explicit, versioned byte
//! encoding of named, typed fields, hashed with SHA-256. No serialiser's text is
//! involved, so no dependency's formatting can change a network or a unit id;
//! docs/seeds.md states the encoding.

use anyhow::{Result, bail};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};

/// The random stream type used everywhere: fast, portable and reproducible.
pub type Stream = ChaCha8Rng;

/// The version of the [`Key`] encoding, written first in every key and recorded in
/// each run directory's metadata: a directory made under another version holds
/// units whose ids and seeds were derived differently, and is not resumed.
pub const KEY_VERSION: &str = "initlab-unit-v2";

/// Type bytes, one after each field name, so that equal bytes of different
/// types never encode the same key.
const TEXT: u8 = b's';
const UINT: u8 = b'u';
const FLOAT: u8 = b'f';
const FLAG: u8 = b'b';
const OPTION: u8 = b'o';
const UINT_LIST: u8 = b'l';
const KEY: u8 = b'k';

/// The explicit identity of a unit or a family of networks: [`KEY_VERSION`], a
/// kind, then fields in the order written, each as (name, type, value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    bytes: Vec<u8>,
}

impl Key {
    /// A key of `kind` ("variance", "train-network", ...).
    pub fn new(kind: &str) -> Key {
        let mut key = Key { bytes: Vec::new() };
        key.put_text(KEY_VERSION);
        key.text("kind", kind)
    }

    /// A UTF-8 string, length-prefixed.
    pub fn text(mut self, name: &str, value: &str) -> Self {
        self.field(name, TEXT);
        self.put_text(value);
        self
    }

    /// An unsigned integer, 8 bytes little-endian.
    pub fn uint(mut self, name: &str, value: u64) -> Self {
        self.field(name, UINT);
        self.bytes.extend(value.to_le_bytes());
        self
    }

    /// A float as its IEEE-754 bits, little-endian; −0.0 is written as 0.0 (they
    /// compare equal, so they name the same thing), and NaN is refused: it equals
    /// nothing, so no unit can be named by it.
    pub fn float(mut self, name: &str, value: f64) -> Result<Self> {
        if value.is_nan() {
            bail!("`{name}` is NaN: give a number");
        }
        let value = if value == 0.0 { 0.0 } else { value };
        self.field(name, FLOAT);
        self.bytes.extend(value.to_bits().to_le_bytes());
        Ok(self)
    }

    /// A boolean, one byte 0 or 1.
    pub fn flag(mut self, name: &str, value: bool) -> Self {
        self.field(name, FLAG);
        self.bytes.push(u8::from(value));
        self
    }

    /// An optional unsigned integer: byte 0, or byte 1 then the value as [`Key::uint`] writes it.
    pub fn maybe_uint(mut self, name: &str, value: Option<u64>) -> Self {
        self.field(name, OPTION);
        if let Some(v) = value {
            self.bytes.extend([1, UINT]);
            self.bytes.extend(v.to_le_bytes());
        } else {
            self.bytes.push(0);
        }
        self
    }

    /// A list of unsigned integers: its length, then each value, 8 bytes little-endian.
    pub fn uints(mut self, name: &str, values: &[u64]) -> Self {
        self.field(name, UINT_LIST);
        self.put_uints(values);
        self
    }

    /// An optional list of unsigned integers: byte 0, or byte 1 then the list as
    /// [`Key::uints`] writes it.
    pub fn maybe_uints(mut self, name: &str, values: Option<&[u64]>) -> Self {
        self.field(name, OPTION);
        if let Some(v) = values {
            self.bytes.extend([1, UINT_LIST]);
            self.put_uints(v);
        } else {
            self.bytes.push(0);
        }
        self
    }

    /// Another key (a part this one is made of), as its bytes, length-prefixed.
    pub fn key(mut self, name: &str, part: &Key) -> Self {
        self.field(name, KEY);
        self.bytes.extend((part.bytes.len() as u64).to_le_bytes());
        self.bytes.extend(&part.bytes);
        self
    }

    /// The encoded bytes (what is hashed).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The unit id: the first 8 bytes of the key's SHA-256, as 16 lowercase hex digits.
    pub fn id(&self) -> String {
        hex(&Sha256::digest(&self.bytes)[..8])
    }

    /// A 64-bit seed under the run's `root` seed: the first 8 bytes, little-endian,
    /// of the SHA-256 of the key with a last field ("root", `root`).
    pub fn seed(&self, root: u64) -> u64 {
        let digest = self.rooted(root);
        u64::from_le_bytes(digest[..8].try_into().expect("sha256 has 32 bytes"))
    }

    /// The random stream of this key under `root`: ChaCha8 keyed by the whole
    /// SHA-256 that [`Key::seed`] takes its first 8 bytes from.
    pub fn stream(&self, root: u64) -> Stream {
        Stream::from_seed(self.rooted(root))
    }

    fn rooted(&self, root: u64) -> [u8; 32] {
        Sha256::digest(&self.clone().uint("root", root).bytes).into()
    }

    fn field(&mut self, name: &str, kind: u8) {
        self.put_text(name);
        self.bytes.push(kind);
    }

    fn put_text(&mut self, text: &str) {
        self.bytes.extend((text.len() as u64).to_le_bytes());
        self.bytes.extend(text.as_bytes());
    }

    fn put_uints(&mut self, values: &[u64]) {
        self.bytes.extend((values.len() as u64).to_le_bytes());
        for v in values {
            self.bytes.extend(v.to_le_bytes());
        }
    }
}

/// A 64-bit seed derived from a root seed and a list of labels, by SHA-256 of the
/// root (8 bytes little-endian) and each label (length-prefixed UTF-8). For
/// streams named by plain labels (synthetic data, input-statistics blocks).
pub fn derive(root: u64, labels: &[&str]) -> u64 {
    let mut hasher = Sha256::new();
    hasher.update(root.to_le_bytes());
    for label in labels {
        hasher.update((label.len() as u64).to_le_bytes());
        hasher.update(label.as_bytes());
    }
    let digest = hasher.finalize();
    u64::from_le_bytes(digest[..8].try_into().expect("sha256 has 32 bytes"))
}

/// A stream for `labels` under `root`.
pub fn stream(root: u64, labels: &[&str]) -> Stream {
    Stream::seed_from_u64(derive(root, labels))
}

/// A short stable hex id of a string (a checksum of a config's text).
pub fn short_hash(text: &str) -> String {
    hex(&Sha256::digest(text.as_bytes())[..8])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    /// The bytes of a small key, written out by hand from the encoding's rules.
    #[test]
    fn a_key_encodes_its_fields_as_documented() {
        let key = Key::new("k").uint("n", 2).float("x", -0.0).unwrap();
        let mut want = Vec::new();
        want.extend(15u64.to_le_bytes());
        want.extend(b"initlab-unit-v2");
        want.extend(4u64.to_le_bytes());
        want.extend(b"kind");
        want.push(b's');
        want.extend(1u64.to_le_bytes());
        want.extend(b"k");
        want.extend(1u64.to_le_bytes());
        want.extend(b"n");
        want.push(b'u');
        want.extend(2u64.to_le_bytes());
        want.extend(1u64.to_le_bytes());
        want.extend(b"x");
        want.push(b'f');
        want.extend([0u8; 8]);
        assert_eq!(key.bytes(), want.as_slice());
    }

    /// Golden values: a change here changes every unit id and network.
    #[test]
    fn ids_and_seeds_are_pinned() {
        let key = Key::new("golden")
            .text("dataset", "synthetic-tiny")
            .uint("width", 10)
            .float("slope", 0.5)
            .unwrap()
            .flag("kurtosis", true)
            .maybe_uint("depth", None)
            .maybe_uints("widths", Some(&[3, 4]))
            .uints("eval_steps", &[])
            .key("family", &Key::new("part").uint("a", 1));
        // The id, the seed and the key's first draw were also computed from the
        // rules in Python (hashlib, and ChaCha8 written out); `stream`'s draw pins
        // rand's `seed_from_u64`.
        let got = [
            key.id(),
            format!("{:016x}", key.seed(42)),
            format!("{:016x}", key.stream(42).random::<u64>()),
            format!("{:016x}", derive(1, &["a", "b"])),
            format!("{:016x}", stream(7, &["x"]).random::<u64>()),
            short_hash("hello"),
        ];
        let want = [
            "e0921ea9aaf1920c",
            "13f8cb3b69e175ee",
            "041d9ebc478584ca",
            "17cfd336b0d19552",
            "c4e385cd2155b701",
            "2cf24dba5fb0a30e",
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn every_part_of_a_key_changes_its_id() {
        let base = || Key::new("k").uint("a", 1);
        let id = base().id();
        assert_ne!(Key::new("j").uint("a", 1).id(), id, "kind");
        assert_ne!(Key::new("k").uint("b", 1).id(), id, "name");
        assert_ne!(Key::new("k").uint("a", 2).id(), id, "value");
        assert_ne!(Key::new("k").text("a", "\u{1}").id(), id, "type");
        assert_ne!(base().uint("c", 0).id(), id, "an extra field");
        assert_ne!(base().seed(1), base().seed(2), "root");
        // Fields are delimited: moving bytes between a name and a value changes the key.
        assert_ne!(
            Key::new("k").text("ab", "c").id(),
            Key::new("k").text("a", "bc").id()
        );
        assert_ne!(
            Key::new("k").maybe_uint("a", None).id(),
            Key::new("k").maybe_uint("a", Some(0)).id()
        );
        assert_ne!(
            Key::new("k").uints("a", &[]).id(),
            Key::new("k").maybe_uints("a", None).id()
        );
        assert_ne!(
            Key::new("k").key("a", &Key::new("j")).id(),
            Key::new("k").key("a", &Key::new("j").uint("b", 0)).id()
        );
    }

    #[test]
    fn negative_zero_is_zero_and_nan_is_refused() {
        let zero = Key::new("k").float("slope", 0.0).unwrap();
        assert_eq!(Key::new("k").float("slope", -0.0).unwrap(), zero);
        let e = Key::new("k").float("slope", f64::NAN).unwrap_err();
        assert!(e.to_string().contains("`slope` is NaN"), "{e}");
        assert!(Key::new("k").float("x", f64::INFINITY).is_ok());
    }
}
