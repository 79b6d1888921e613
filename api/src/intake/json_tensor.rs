//! Reading a JSON tensor (`{"tensor": [[[…]]]}`) straight into a flat buffer.
//!
//! The tensor is deserialised by a streaming visitor instead of going through
//! `serde_json::Value` first. That matters for memory: a `Value` costs 32+
//! bytes per number, so a 25 MB body of small numbers would briefly occupy
//! several hundred MB of heap, while the flat `f32` buffer costs 4 bytes per
//! number — at most twice the body size, since every number takes at least
//! two bytes of JSON (`0,`). Nothing is ever allocated from a *declared*
//! size: the shape is learnt from the arrays as they arrive, so a ragged
//! list whose first row claims a huge shape cannot trigger a huge
//! allocation before its raggedness is noticed.
//!
//! Rectangularity is checked on the fly: all numbers must sit at the same
//! depth, and every array at a given depth must have the same length.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, SeqAccess, Visitor};

/// Deepest nesting accepted in a tensor: a batch axis and the three spatial
/// and channel axes of an image.
pub const MAX_TENSOR_DEPTH: usize = 4;

/// A rectangular tensor, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonTensor {
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

impl<'de> de::Deserialize<'de> for JsonTensor {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut acc = Accumulator::default();
        Level {
            acc: &mut acc,
            depth: 0,
        }
        .deserialize(d)?;
        if acc.leaf_depth.is_none_or(|l| l == 0) {
            return Err(de::Error::custom(
                "`tensor`: expected a nested list of numbers",
            ));
        }
        let shape = acc.shape.iter().map_while(|d| *d).collect();
        Ok(JsonTensor {
            shape,
            values: acc.values,
        })
    }
}

/// What has been learnt so far while walking the lists.
#[derive(Default)]
struct Accumulator {
    /// Length of the arrays at each depth, once the first one has ended.
    shape: [Option<usize>; MAX_TENSOR_DEPTH],
    /// Depth of the numbers, once the first one has been seen.
    leaf_depth: Option<usize>,
    values: Vec<f32>,
}

/// Deserialises one element at `depth` (0 is the tensor itself).
struct Level<'a> {
    acc: &'a mut Accumulator,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for Level<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl Level<'_> {
    fn number<E: de::Error>(self, v: f64) -> Result<(), E> {
        match self.acc.leaf_depth {
            None => self.acc.leaf_depth = Some(self.depth),
            Some(l) if l == self.depth => {}
            Some(_) => return Err(E::custom("`tensor`: the list is not rectangular")),
        }
        // f64 values beyond the f32 range would become infinities.
        let f = v as f32;
        if !f.is_finite() {
            return Err(E::custom(
                "`tensor`: a value is outside the range of a 32-bit float",
            ));
        }
        self.acc.values.push(f);
        Ok(())
    }
}

impl<'de> Visitor<'de> for Level<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a rectangular nested list of numbers")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let depth = self.depth;
        if depth == MAX_TENSOR_DEPTH {
            return Err(de::Error::custom(format!(
                "`tensor`: more than {MAX_TENSOR_DEPTH} dimensions"
            )));
        }
        if self.acc.leaf_depth.is_some_and(|l| l <= depth) {
            return Err(de::Error::custom("`tensor`: the list is not rectangular"));
        }
        let mut n = 0usize;
        while seq
            .next_element_seed(Level {
                acc: &mut *self.acc,
                depth: depth + 1,
            })?
            .is_some()
        {
            n += 1;
        }
        if n == 0 {
            return Err(de::Error::custom("`tensor`: empty dimension"));
        }
        match self.acc.shape[depth] {
            None => self.acc.shape[depth] = Some(n),
            Some(m) if m == n => {}
            Some(m) => {
                return Err(de::Error::custom(format!(
                    "`tensor`: ragged at depth {depth}: {n} items, expected {m}"
                )));
            }
        }
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.number(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.number(v as f64)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.number(v as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<JsonTensor, String> {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn flattens_rectangular_lists() {
        let t = parse("[[[1, 2], [3, 4]], [[5, 6], [7, 8.5]]]").unwrap();
        assert_eq!(t.shape, vec![2, 2, 2]);
        assert_eq!(t.values, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.5]);
        assert_eq!(parse("[-1]").unwrap().shape, vec![1]);
    }

    #[test]
    fn rejects_ragged_deep_and_non_numeric() {
        for (bad, why) in [
            ("[[1, 2], [3]]", "ragged"),
            ("[[1, 2], 3]", "rectangular"),
            ("[1, [2]]", "rectangular"),
            ("[[1, \"x\"]]", "string"),
            ("[[[[[1]]]]]", "dimensions"),
            ("[]", "empty"),
            ("[[], []]", "empty"),
            ("3", "nested list"),
            ("[1e300]", "32-bit"),
            ("[null]", "null"),
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    /// The shape claimed by the first row used to size the buffer up front:
    /// `[[0 × n], 0 × n]` declares n² values in 4n bytes of JSON.
    #[test]
    fn a_ragged_list_cannot_claim_a_huge_shape() {
        let n = 100_000;
        let row = vec!["0"; n].join(",");
        let text = format!("[[{row}],{row}]");
        let err = parse(&text).unwrap_err();
        assert!(err.contains("rectangular"), "{err}");
    }
}
