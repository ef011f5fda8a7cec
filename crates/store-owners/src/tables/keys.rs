//! The key encoding of every table: byte strings that sort like the tuples they encode.
//!
//! A key is a tag byte (which kind of record, so one table can hold a record family and its
//! indexes side by side) followed by components:
//!
//! - `u64`: 8 bytes big-endian, so numbers sort numerically.
//! - string: its UTF-8 bytes with every `0x00` written as `0x00 0xFF`, then the terminator
//!   `0x00 0x00`. Strings sort lexicographically, and no encoded string is a prefix of another
//!   (`"a"` is `61 00 00`, `"a\0"` is `61 00 FF 00 00`), so a prefix scan for one string never
//!   returns the keys of a longer one.
//!
//! Tuples therefore sort component by component, and the keys of one scope (a tag and its
//! leading components) form one contiguous range: [`Key::range`].

use std::ops::Bound;

use store_core::KeyRange;

use crate::error::CallError;

const ESCAPE: u8 = 0xFF;
const TERMINATOR: u8 = 0x00;

/// A key being built, component by component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key(Vec<u8>);

impl Key {
    /// A key of the record kind `tag`.
    pub fn tag(tag: u8) -> Key {
        Key(vec![tag])
    }

    /// Append a string component.
    pub fn str(mut self, s: &str) -> Key {
        for &b in s.as_bytes() {
            self.0.push(b);
            if b == 0 {
                self.0.push(ESCAPE);
            }
        }
        self.0.extend_from_slice(&[0, TERMINATOR]);
        self
    }

    /// Append a `u64` component.
    pub fn u64(mut self, n: u64) -> Key {
        self.0.extend_from_slice(&n.to_be_bytes());
        self
    }

    /// The encoded bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// The encoded bytes, owned.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }

    /// Every key that extends this one (the whole scope), ascending.
    pub fn range(&self) -> KeyRange {
        KeyRange::prefix(&self.0)
    }

    /// The keys of this scope that sort after `self.u64(after)`: used for "after sequence
    /// number" reads.
    pub fn range_after(&self, after: u64) -> KeyRange {
        KeyRange {
            start: Bound::Excluded(self.clone().u64(after).into_bytes()),
            ..self.range()
        }
    }

    /// The keys of this scope from `self.u64(from)` (included) to `self.u64(to)` (excluded).
    pub fn range_between(&self, from: u64, to: u64) -> KeyRange {
        KeyRange::between(self.clone().u64(from).bytes(), self.clone().u64(to).bytes())
    }
}

/// Reads the components of a stored key back, in the order they were written.
#[derive(Debug)]
pub struct KeyReader<'a> {
    rest: &'a [u8],
}

fn malformed(what: &str) -> CallError {
    CallError::Decode(format!("malformed key: {what}"))
}

impl<'a> KeyReader<'a> {
    /// Start reading `key`, which must be of the record kind `tag`.
    pub fn new(key: &'a [u8], tag: u8) -> Result<KeyReader<'a>, CallError> {
        match key.split_first() {
            Some((&first, rest)) if first == tag => Ok(KeyReader { rest }),
            _ => Err(malformed("wrong tag")),
        }
    }

    /// The next string component.
    pub fn str(&mut self) -> Result<String, CallError> {
        let mut out = Vec::new();
        let mut i = 0;
        loop {
            match self.rest.get(i..i + 2) {
                Some([0, TERMINATOR]) => break,
                Some([0, ESCAPE]) => {
                    out.push(0);
                    i += 2;
                }
                Some([0, _]) => return Err(malformed("bad escape")),
                Some([b, _]) => {
                    out.push(*b);
                    i += 1;
                }
                _ => return Err(malformed("unterminated string")),
            }
        }
        self.rest = &self.rest[i + 2..];
        String::from_utf8(out).map_err(|_| malformed("string is not UTF-8"))
    }

    /// The next `u64` component.
    pub fn u64(&mut self) -> Result<u64, CallError> {
        let (head, rest) = self
            .rest
            .split_first_chunk::<8>()
            .ok_or_else(|| malformed("short integer"))?;
        self.rest = rest;
        Ok(u64::from_be_bytes(*head))
    }

    /// Check that the whole key was read.
    pub fn end(self) -> Result<(), CallError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(malformed("trailing bytes"))
        }
    }
}

/// A `u64` stored as a value (sequence counters): 8 bytes big-endian.
pub fn u64_value(bytes: &[u8]) -> Result<u64, CallError> {
    let array: [u8; 8] = bytes
        .try_into()
        .map_err(|_| CallError::Decode("counter is not 8 bytes".into()))?;
    Ok(u64::from_be_bytes(array))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_sort_and_round_trip() {
        let names = ["", "\0", "\0\0", "a", "a\0", "a\0b", "ab", "b", "\u{ff}"];
        let mut keys: Vec<Vec<u8>> = names
            .iter()
            .map(|n| Key::tag(1).str(n).u64(7).into_bytes())
            .collect();
        let sorted = keys.clone();
        keys.sort();
        assert_eq!(keys, sorted);
        for (name, key) in names.iter().zip(&keys) {
            let mut r = KeyReader::new(key, 1).unwrap();
            assert_eq!(r.str().unwrap(), *name);
            assert_eq!(r.u64().unwrap(), 7);
            r.end().unwrap();
        }
    }

    #[test]
    fn a_scope_does_not_contain_a_longer_string() {
        let scope = Key::tag(1).str("a");
        assert!(
            !scope
                .range()
                .contains(Key::tag(1).str("a\0").u64(0).bytes())
        );
        assert!(!scope.range().contains(Key::tag(1).str("ab").u64(0).bytes()));
        assert!(
            scope
                .range()
                .contains(Key::tag(1).str("a").u64(u64::MAX).bytes())
        );
    }
}
