//! [`Data`], the session data, and [`EncodedData`], its JSON text.
//!
//! Why not a plain `serde_json::Map`: turning the map into JSON text and
//! back is the most expensive part of most store operations (decoding a
//! ~200-byte object costs more than a whole in-process lookup). `Data`
//! remembers the text it was encoded to until it is mutated, so a session
//! that is saved unmodified is not encoded again, and a store can hand back
//! data that is only decoded when the application first reads it: an
//! in-process store keeps the text it was given, and a store that reads
//! bytes from a backend checks them (as strictly as a decode, building
//! nothing) and keeps them as the text.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{Error, Result};

/// A JSON object, the type behind [`Data`].
type Map = serde_json::Map<String, serde_json::Value>;

/// Session data: a JSON object. Any JSON value round-trips exactly through
/// every store, including integers from `i64::MIN` to `u64::MAX` and floats.
///
/// It dereferences to a [`serde_json::Map`], so it is read and changed like
/// one. Behind that, it keeps whichever forms it has been asked for (the
/// map, its JSON text, or both); changing the map drops the text.
///
/// ```
/// use session_core::Data;
///
/// let mut data = Data::new();
/// data.insert("user".into(), "ada".into());
/// let text = data.encoded()?;               // encoded once...
/// assert_eq!(text.as_str(), r#"{"user":"ada"}"#);
/// assert_eq!(data.encoded()?, text);        // ...and remembered
///
/// let copy = Data::from(text);              // decoded on first read
/// assert_eq!(copy["user"], "ada");
/// assert_eq!(copy, data);
/// # Ok::<(), session_core::Error>(())
/// ```
#[derive(Clone, Default)]
pub struct Data {
    /// The object. Unset only while `json` is set and nobody has read it.
    map: OnceLock<Map>,
    /// The JSON text it was made from ([`From<EncodedData>`]), until the
    /// map is changed. A plain field, not a `OnceLock`: filling a
    /// `OnceLock` at construction runs its one-time initialisation (two
    /// atomic read-modify-writes), a noticeable part of an in-process
    /// `load`.
    text: Option<EncodedData>,
    /// Its JSON text, once encoded and until the map is changed (set
    /// through `&self` by [`Data::encoded`]). Unset while `text` is set.
    json: OnceLock<EncodedData>,
}

impl Data {
    /// How deeply data may nest (the top-level object counts as one), so
    /// that whatever is stored can be read back: `serde_json`'s parser
    /// refuses deeper documents.
    pub const MAX_DEPTH: usize = 127;

    /// Empty data.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The object, read-only (what `*data` gives).
    #[must_use]
    pub fn as_map(&self) -> &Map {
        self.map.get_or_init(|| {
            let json = self.text().map_or("{}", EncodedData::as_str);
            parse_own(json)
        })
    }

    /// The object, owned.
    #[must_use]
    pub fn into_map(mut self) -> Map {
        match self.map.take() {
            Some(map) => map,
            None => self.text().map_or_else(Map::new, |j| parse_own(j)),
        }
    }

    /// The JSON text of the object: remembered from the last call (or from
    /// the [`EncodedData`] this was made from) unless the data changed
    /// since, encoded otherwise.
    ///
    /// # Errors
    ///
    /// [`Error::Encode`] if the data nests deeper than [`Data::MAX_DEPTH`]
    /// levels, as no store could read it back.
    pub fn encoded(&self) -> Result<EncodedData> {
        if let Some(json) = self.text() {
            return Ok(json.clone());
        }
        let map = self.as_map();
        if depth_exceeds(map, Self::MAX_DEPTH) {
            return Err(Error::Encode {
                source: format!("the data nests deeper than {} levels", Self::MAX_DEPTH).into(),
            });
        }
        let text = serde_json::to_string(map).map_err(|e| Error::Encode { source: e.into() })?;
        let json = EncodedData(text.into());
        // A concurrent caller may have set it first; both texts are equal.
        let _ = self.json.set(json.clone());
        Ok(json)
    }

    /// `value` serialized as the JSON value of the top-level field
    /// `field`, as [`Session::insert`](crate::Session::insert) stores it:
    /// for a layer that serializes before it takes its session lock.
    ///
    /// # Errors
    ///
    /// [`Error::TooDeep`] if `value` nests deeper than
    /// [`MAX_DEPTH`](Self::MAX_DEPTH) allows under a field, found before
    /// anything is built from it (a value thousands deep is an error, not
    /// a stack overflow); [`Error::Value`] if it does not serialize to
    /// JSON.
    pub fn value_of<T: Serialize + ?Sized>(field: &str, value: &T) -> Result<serde_json::Value> {
        to_value(field, value)
    }

    /// Whether the JSON text is at hand without encoding, e.g. for data
    /// loaded from an in-process store and not changed since.
    #[must_use]
    pub fn is_encoded(&self) -> bool {
        self.text().is_some()
    }
}

impl Data {
    /// The JSON text, if it is at hand.
    fn text(&self) -> Option<&EncodedData> {
        self.text.as_ref().or_else(|| self.json.get())
    }

    #[allow(clippy::expect_used, reason = "deref_mut sets the map just before")]
    fn map_mut(&mut self) -> &mut Map {
        self.map.get_mut().expect("the map is set")
    }
}

/// Parse the text of an [`EncodedData`].
///
/// `EncodedData` is made in two ways, and both guarantee the text parses:
/// - by [`Data::encoded`], from a map within [`Data::MAX_DEPTH`], with
///   strings that are valid UTF-8 and finite numbers (`serde_json::Value`
///   cannot hold others), and `serde_json` writes floats so that they parse
///   back exactly (`float_roundtrip`);
/// - by [`EncodedData::checked`], from text read back from a backend, which
///   ran it through the very parser used here (same number, string, escape
///   and nesting rules), only without building anything.
///
/// So parsing it cannot fail; if it ever did, that would be a bug in
/// `serde_json` (the two paths are compared on mutated inputs in the tests).
#[allow(
    clippy::expect_used,
    reason = "the text was produced by serde_json or accepted by its parser; see above"
)]
fn parse_own(json: &str) -> Map {
    serde_json::from_str(json).expect("session data checked or encoded by this module parses")
}

/// How deeply a value under a top-level field may nest: the top-level
/// object is one level of [`Data::MAX_DEPTH`].
pub(crate) const MAX_VALUE_DEPTH: usize = Data::MAX_DEPTH - 1;

/// `value` as the JSON value of the top-level field `field`.
///
/// The depth is checked first, by a serialization into nothing that stops
/// at the first container past [`MAX_VALUE_DEPTH`], so a value nested
/// thousands deep (which would overflow the stack of whatever recursed
/// through it) is refused before anything is built from it. Only then is
/// it serialized into a [`serde_json::Value`], exactly as
/// `serde_json::to_value` does.
///
/// # Errors
///
/// [`Error::TooDeep`] past the limit, [`Error::Value`] if `value` does not
/// serialize to JSON.
fn to_value<T: Serialize + ?Sized>(field: &str, value: &T) -> Result<serde_json::Value> {
    let value_error = |source| Error::Value {
        field: field.to_owned(),
        source,
    };
    let too_deep = std::cell::Cell::new(false);
    let formatter = DepthFormatter {
        depth: 0,
        too_deep: &too_deep,
    };
    let mut probe = serde_json::Serializer::with_formatter(std::io::sink(), formatter);
    if let Err(source) = value.serialize(&mut probe) {
        return Err(if too_deep.get() {
            Error::TooDeep {
                field: field.to_owned(),
                max_depth: MAX_VALUE_DEPTH,
            }
        } else {
            value_error(source)
        });
    }
    serde_json::to_value(value).map_err(value_error)
}

/// Check a value handed over whole: [`Error::TooDeep`] (the value then
/// taken apart without recursion) if it nests past [`MAX_VALUE_DEPTH`].
pub(crate) fn check_value(field: &str, value: serde_json::Value) -> Result<serde_json::Value> {
    if value_exceeds(&value, MAX_VALUE_DEPTH) {
        dismantle(value);
        return Err(Error::TooDeep {
            field: field.to_owned(),
            max_depth: MAX_VALUE_DEPTH,
        });
    }
    Ok(value)
}

/// A compact JSON formatter that fails at the first container nested past
/// [`MAX_VALUE_DEPTH`], and says so in `too_deep`.
struct DepthFormatter<'a> {
    depth: usize,
    too_deep: &'a std::cell::Cell<bool>,
}

impl DepthFormatter<'_> {
    fn enter(&mut self) -> std::io::Result<()> {
        self.depth += 1;
        if self.depth > MAX_VALUE_DEPTH {
            self.too_deep.set(true);
            return Err(std::io::Error::other("nested too deep"));
        }
        Ok(())
    }
}

impl serde_json::ser::Formatter for DepthFormatter<'_> {
    fn begin_array<W: ?Sized + std::io::Write>(&mut self, _: &mut W) -> std::io::Result<()> {
        self.enter()
    }

    fn end_array<W: ?Sized + std::io::Write>(&mut self, _: &mut W) -> std::io::Result<()> {
        self.depth -= 1;
        Ok(())
    }

    fn begin_object<W: ?Sized + std::io::Write>(&mut self, _: &mut W) -> std::io::Result<()> {
        self.enter()
    }

    fn end_object<W: ?Sized + std::io::Write>(&mut self, _: &mut W) -> std::io::Result<()> {
        self.depth -= 1;
        Ok(())
    }
}

/// Drop `value` without recursion: `serde_json::Value`'s own drop recurses
/// once per level, which a value thousands deep turns into a stack
/// overflow.
fn dismantle(value: serde_json::Value) {
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        match value {
            serde_json::Value::Array(items) => stack.extend(items),
            serde_json::Value::Object(map) => stack.extend(map.into_iter().map(|(_, v)| v)),
            _ => {}
        }
    }
}

/// Whether `value` nests more than `limit` containers deep (a scalar: 0).
/// Recurses at most `limit` levels.
fn value_exceeds(value: &serde_json::Value, limit: usize) -> bool {
    match value {
        serde_json::Value::Object(m) => {
            limit == 0 || m.values().any(|v| value_exceeds(v, limit - 1))
        }
        serde_json::Value::Array(a) => limit == 0 || a.iter().any(|v| value_exceeds(v, limit - 1)),
        _ => false,
    }
}

/// Whether any value in `map` nests more than `limit` containers deep,
/// counting `map` itself.
fn depth_exceeds(map: &Map, limit: usize) -> bool {
    limit == 0 || map.values().any(|v| value_exceeds(v, limit - 1))
}

impl Deref for Data {
    type Target = Map;

    fn deref(&self) -> &Map {
        self.as_map()
    }
}

impl DerefMut for Data {
    /// Mutable access forgets the remembered text.
    fn deref_mut(&mut self) -> &mut Map {
        if self.map.get().is_none() {
            let map = self.text().map_or_else(Map::new, |j| parse_own(j));
            let _ = self.map.set(map);
        }
        self.text = None;
        self.json.take();
        self.map_mut()
    }
}

impl From<Map> for Data {
    fn from(map: Map) -> Self {
        Self {
            map: OnceLock::from(map),
            text: None,
            json: OnceLock::new(),
        }
    }
}

impl From<EncodedData> for Data {
    /// Data that is decoded when first read.
    fn from(json: EncodedData) -> Self {
        Self {
            map: OnceLock::new(),
            text: Some(json),
            json: OnceLock::new(),
        }
    }
}

impl From<Data> for Map {
    fn from(data: Data) -> Self {
        data.into_map()
    }
}

impl FromIterator<(String, serde_json::Value)> for Data {
    fn from_iter<I: IntoIterator<Item = (String, serde_json::Value)>>(iter: I) -> Self {
        Map::from_iter(iter).into()
    }
}

impl IntoIterator for Data {
    type Item = (String, serde_json::Value);
    type IntoIter = serde_json::map::IntoIter;

    fn into_iter(self) -> Self::IntoIter {
        self.into_map().into_iter()
    }
}

impl<'a> IntoIterator for &'a Data {
    type Item = (&'a String, &'a serde_json::Value);
    type IntoIter = serde_json::map::Iter<'a>;

    fn into_iter(self) -> Self::IntoIter {
        self.as_map().iter()
    }
}

impl PartialEq for Data {
    fn eq(&self, other: &Self) -> bool {
        match (self.text(), other.text()) {
            // Same text, same object; different texts may still be equal
            // objects (key order), so compare the maps then.
            (Some(a), Some(b)) if a == b => true,
            _ => self.as_map() == other.as_map(),
        }
    }
}

impl PartialEq<Map> for Data {
    fn eq(&self, other: &Map) -> bool {
        self.as_map() == other
    }
}

impl PartialEq<Data> for Map {
    fn eq(&self, other: &Data) -> bool {
        self == other.as_map()
    }
}

impl fmt::Debug for Data {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.as_map().fmt(f)
    }
}

impl Serialize for Data {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        self.as_map().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Data {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        Map::deserialize(deserializer).map(Self::from)
    }
}

/// The JSON text of a [`Data`], shared (cloning it copies a pointer).
///
/// Made only by [`Data::encoded`] (or [`Record::encode_data`](crate::Record::encode_data)),
/// so it always decodes back to the data it came from: a store that keeps
/// it can rebuild the data with `Data::from` without checking it again.
/// Stores that read bytes from outside the process decode them with
/// [`Record::decode_data`](crate::Record::decode_data) instead, which
/// checks them.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct EncodedData(Arc<str>);

impl EncodedData {
    /// `text` if it is a JSON object that decodes into a [`Data`], without
    /// decoding it: what [`Record::decode_data`](crate::Record::decode_data)
    /// keeps of data read back from a backend, so a `load` does not build a
    /// map that the application may never read (the map is built on first
    /// access).
    ///
    /// The text goes through `serde_json`'s own parser, as
    /// `serde_json::from_str::<Map>` would, with a visitor that builds
    /// nothing: numbers, strings and escapes, nesting limits and trailing
    /// characters are judged exactly as a full decode judges them, so what
    /// this accepts always decodes later.
    pub(crate) fn checked(text: &str) -> serde_json::Result<Self> {
        serde_json::from_str::<CheckedObject>(text)?;
        Ok(Self(text.into()))
    }

    /// The JSON text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The JSON text as bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl Deref for EncodedData {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for EncodedData {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl AsRef<[u8]> for EncodedData {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for EncodedData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("EncodedData").field(&&*self.0).finish()
    }
}

impl fmt::Display for EncodedData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A JSON object, parsed and thrown away: see [`EncodedData::checked`].
struct CheckedObject;

impl<'de> Deserialize<'de> for CheckedObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        // `deserialize_map`, as `Map` asks for: anything but an object is
        // refused with the error a full decode gives.
        deserializer
            .deserialize_map(CheckVisitor)
            .map(|Checked| Self)
    }
}

/// Any JSON value, parsed and thrown away.
struct Checked;

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        // `deserialize_any`, as `serde_json::Value` asks for: the parser
        // then applies the same rules (and recursion limit) as for a value.
        deserializer.deserialize_any(CheckVisitor)
    }
}

/// Accepts every value a `serde_json::Value` accepts, and keeps none of it.
struct CheckVisitor;

impl<'de> serde::de::Visitor<'de> for CheckVisitor {
    type Value = Checked;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_bool<E>(self, _: bool) -> std::result::Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_i64<E>(self, _: i64) -> std::result::Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_u64<E>(self, _: u64) -> std::result::Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_f64<E>(self, _: f64) -> std::result::Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_str<E>(self, _: &str) -> std::result::Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_unit<E>(self) -> std::result::Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> std::result::Result<Checked, A::Error> {
        while seq.next_element::<Checked>()?.is_some() {}
        Ok(Checked)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<Checked, A::Error> {
        while map.next_key::<Checked>()?.is_some() {
            map.next_value::<Checked>()?;
        }
        Ok(Checked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn object(v: Value) -> Map {
        let Value::Object(map) = v else {
            unreachable!()
        };
        map
    }

    fn nested(depth: usize) -> Map {
        let mut v = json!(1);
        for _ in 1..depth {
            v = json!({ "a": v });
        }
        object(json!({ "a": v }))
    }

    #[test]
    fn encoding_is_remembered_until_the_map_changes() {
        let mut data = Data::from(object(json!({"n": 1})));
        assert!(!data.is_encoded());
        let first = data.encoded().unwrap();
        assert!(data.is_encoded());
        assert!(Arc::ptr_eq(&first.0, &data.encoded().unwrap().0));
        data.insert("m".into(), 2.into());
        assert!(!data.is_encoded());
        let text = data.encoded().unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&text).unwrap(),
            json!({"n": 1, "m": 2})
        );
    }

    #[test]
    fn data_from_text_decodes_lazily_and_equals_the_original() {
        let original = Data::from(object(json!({"max": u64::MAX, "f": 0.1, "s": "ü"})));
        let copy = Data::from(original.encoded().unwrap());
        assert!(copy.map.get().is_none());
        assert_eq!(copy, original);
        assert_eq!(copy["max"], u64::MAX);
        let mut changed = copy.clone();
        changed.remove("f");
        assert_ne!(changed, original);
        assert_eq!(copy.into_map(), original.into_map());
    }

    #[test]
    fn the_depth_limit_matches_what_the_parser_reads_back() {
        let deepest = Data::from(nested(Data::MAX_DEPTH));
        let text = deepest.encoded().unwrap();
        assert!(serde_json::from_str::<Map>(&text).is_ok());
        let too_deep = Data::from(nested(Data::MAX_DEPTH + 1));
        let err = too_deep.encoded().unwrap_err();
        assert!(matches!(err, Error::Encode { .. }), "{err}");
        let text = serde_json::to_string(&*too_deep).unwrap();
        assert!(serde_json::from_str::<Map>(&text).is_err());
    }

    #[test]
    fn serde_sees_a_plain_object() {
        let data = Data::from(object(json!({"a": [1, {"b": null}]})));
        let text = serde_json::to_string(&data).unwrap();
        assert_eq!(text, r#"{"a":[1,{"b":null}]}"#);
        assert_eq!(serde_json::from_str::<Data>(&text).unwrap(), data);
        assert_eq!(format!("{data:?}"), format!("{:?}", data.as_map()));
    }

    /// What `EncodedData::checked` accepts, a full decode accepts, and the
    /// other way round; accepted text decodes to the map a full decode
    /// builds.
    fn assert_check_agrees(bytes: &[u8]) {
        let full = serde_json::from_slice::<Map>(bytes);
        let checked = std::str::from_utf8(bytes)
            .ok()
            .and_then(|text| EncodedData::checked(text).ok());
        match (full, checked) {
            (Ok(map), Some(text)) => assert_eq!(Data::from(text).into_map(), map),
            (Err(_), None) => {}
            (full, checked) => panic!(
                "check and decode disagree on {:?}: decode {:?}, check {:?}",
                String::from_utf8_lossy(bytes),
                full.map(|_| ()),
                checked.map(|_| ())
            ),
        }
    }

    #[test]
    fn the_check_accepts_exactly_what_a_decode_accepts() {
        let deep = |n: usize| format!("{}1{}", r#"{"a":"#.repeat(n), "}".repeat(n));
        let arrays = |n: usize| format!(r#"{{"a":{}1{}}}"#, "[".repeat(n), "]".repeat(n));
        let cases: Vec<Vec<u8>> = [
            r#"{}"#,
            r#" { "a" : 1 } "#,
            r#"{"a":1,"a":2}"#,
            r#"{"max":18446744073709551615,"big":18446744073709551616,"min":-9223372036854775808}"#,
            r#"{"f":1e308,"inf":1e309,"neg":-1e400,"tiny":1e-400,"z":-0.0,"e":1E+2}"#,
            r#"{"s":"\u00e9\ud83d\ude00\n\"\\\/"}"#,
            r#"{"lone":"\ud800"}"#,
            r#"{"low":"\udc00x"}"#,
            r#"{"bad":"\x"}"#,
            r#"{"ctl":"a	b"}"#,
            r#"{"n":01}"#,
            r#"{"n":1.}"#,
            r#"{"n":-}"#,
            r#"{"t":true,"f":false,"z":null,"a":[],"o":{}}"#,
            r#"{"a":1,}"#,
            r#"{"a":[1,]}"#,
            r#"{"a":1} x"#,
            r#"{1:2}"#,
            r#"[1,2]"#,
            r#""text""#,
            r#"1"#,
            r#"null"#,
            r#""#,
            r#"{"#,
            r#"{"a":tru}"#,
            r#"{"a":NaN}"#,
        ]
        .iter()
        .map(|c| c.as_bytes().to_vec())
        .chain([
            deep(Data::MAX_DEPTH).into_bytes(),
            deep(Data::MAX_DEPTH + 1).into_bytes(),
            deep(Data::MAX_DEPTH + 2).into_bytes(),
            arrays(Data::MAX_DEPTH - 1).into_bytes(),
            arrays(Data::MAX_DEPTH).into_bytes(),
            b"{\"a\":\"\xff\"}".to_vec(),
            b"{\"a\":\"\xc3\"}".to_vec(),
            b"\xef\xbb\xbf{}".to_vec(),
        ])
        .collect();
        for case in &cases {
            assert_check_agrees(case);
        }
    }

    /// The same, on thousands of mutations of valid session data: bytes
    /// replaced by JSON's structural and escape characters (or any byte),
    /// deleted, inserted or doubled, from a fixed seed so a failure repeats.
    #[test]
    fn the_check_agrees_with_a_decode_on_mutated_data() {
        let seeds = [
            r#"{"user":"ada","n":42,"roles":["admin","ops"],"cart":{"items":[1,2.5,-3e2],"note":"\u00e9\n"},"ok":true,"z":null}"#,
            r#"{"a":{"b":{"c":[[[{"d":"e"}]]]}},"big":18446744073709551615,"f":0.1}"#,
        ];
        let alphabet = b"{}[]:,\"\\/u0123456789abcdefABCDEF.eE+- \ttrufalsn\x00\x7f\xc3\xa9\xff";
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |bound: usize| {
            // xorshift64*: a fixed, dependency-free sequence.
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let r = state.wrapping_mul(0x2545_f491_4f6c_dd1d);
            usize::try_from(r >> 33).unwrap() % bound
        };
        let mut accepted = 0;
        for round in 0..20_000 {
            let mut bytes = seeds[round % seeds.len()].as_bytes().to_vec();
            for _ in 0..=next(3) {
                let at = next(bytes.len());
                match next(5) {
                    0 => bytes[at] = alphabet[next(alphabet.len())],
                    1 => bytes[at] = u8::try_from(next(256)).unwrap(),
                    2 => {
                        bytes.remove(at);
                    }
                    3 => bytes.insert(at, alphabet[next(alphabet.len())]),
                    _ => {
                        let end = (at + next(8)).min(bytes.len());
                        let piece = bytes[at..end].to_vec();
                        bytes.splice(at..at, piece);
                    }
                }
                if bytes.is_empty() {
                    break;
                }
            }
            if serde_json::from_slice::<Map>(&bytes).is_ok() {
                accepted += 1;
            }
            assert_check_agrees(&bytes);
        }
        // Both outcomes were exercised, or the comparison proved little.
        assert!(accepted > 500 && accepted < 19_500, "{accepted} accepted");
    }
}
