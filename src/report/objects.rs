//! How Hasura's inconsistent objects are named in reports. Entries differ
//! in shape: most have a `name`, some only a `type` and a `reason`, some
//! only a `reason`.

use serde::Deserialize;
use serde_json::Number;
use serde_json::value::RawValue;

use crate::hasura::Object;

/// The name that identifies an object in fingerprints and messages: its
/// `name`, else its `type` and `reason`, else its `reason`.
pub fn name(object: &Object) -> String {
    let fields = Fields::of(object);
    match (
        fields.text(fields.name),
        fields.text(fields.ty),
        fields.reason(),
    ) {
        (Some(name), _, _) => name,
        (None, Some(ty), Some(reason)) => format!("{ty}: {reason}"),
        (None, None, Some(reason)) => reason,
        (None, Some(ty), None) => ty,
        // Not a shape Hasura sends; the whole entry, compact and with its
        // keys sorted, still names it stably.
        (None, None, None) => object.to_value().to_string(),
    }
}

/// One line per object for people: `name: reason`, where a nameless
/// object is already named by its type and reason.
pub fn line(object: &Object) -> String {
    let fields = Fields::of(object);
    match (fields.text(fields.name), fields.reason()) {
        (Some(name), Some(reason)) => format!("{name}: {reason}"),
        _ => name(object),
    }
}

/// The names of every object, sorted, each once: the same set of
/// inconsistencies always gives the same list.
pub fn sorted_names(objects: &[Object]) -> Vec<String> {
    let mut names: Vec<String> = objects.iter().map(name).collect();
    names.sort();
    names.dedup();
    names
}

/// The `type` of every object that has one, sorted, each once.
pub fn sorted_types(objects: &[Object]) -> Vec<String> {
    let mut types: Vec<String> = objects
        .iter()
        .filter_map(|o| {
            let fields = Fields::of(o);
            fields.text(fields.ty)
        })
        .collect();
    types.sort();
    types.dedup();
    types
}

/// `text` cut to at most `max` characters, with an ellipsis when cut.
pub fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max.saturating_sub(1)) {
        Some((end, _)) if text.chars().count() > max => format!("{}…", &text[..end]),
        _ => text.to_owned(),
    }
}

/// The three fields that name an object, borrowed from its text and left
/// unparsed until asked for. Any of them may be any JSON; when a key is
/// repeated, the last one counts, as it would in a parsed map.
#[derive(Default)]
struct Fields<'a> {
    ty: Option<&'a RawValue>,
    name: Option<&'a RawValue>,
    reason: Option<&'a RawValue>,
}

impl<'a> Fields<'a> {
    /// The fields of an object; none when the entry is not a JSON object.
    fn of(object: &'a Object) -> Fields<'a> {
        let json = object.json();
        if !json.starts_with('{') {
            return Fields::default();
        }
        // The text was parsed once already; it cannot fail here.
        serde_json::from_str(json).unwrap_or_default()
    }

    fn reason(&self) -> Option<String> {
        self.text(self.reason)
    }

    /// A field as text: strings as they are, other scalars printed; empty
    /// strings, null, arrays and objects count as missing.
    fn text(&self, field: Option<&RawValue>) -> Option<String> {
        let json = field?.get();
        match json.as_bytes().first()? {
            b'"' => serde_json::from_str::<String>(json)
                .ok()
                .filter(|t| !t.is_empty()),
            b't' | b'f' => Some(json.to_owned()),
            b'n' | b'[' | b'{' => None,
            // Printed as a parsed number would be: `1.50` reads `1.5`.
            _ => serde_json::from_str::<Number>(json)
                .ok()
                .map(|n| n.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(FieldsVisitor)
    }
}

/// The keys of interest; every other key is skipped unread.
#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum Key {
    Type,
    Name,
    Reason,
    #[serde(other)]
    Other,
}

struct FieldsVisitor;

impl<'de> serde::de::Visitor<'de> for FieldsVisitor {
    type Value = Fields<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<Fields<'de>, M::Error> {
        let mut fields = Fields::default();
        while let Some(key) = map.next_key::<Key>()? {
            // `null` is kept as a field, so that a later null still
            // replaces an earlier value.
            let slot = match key {
                Key::Type => &mut fields.ty,
                Key::Name => &mut fields.name,
                Key::Reason => &mut fields.reason,
                Key::Other => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                    continue;
                }
            };
            *slot = Some(map.next_value::<&RawValue>()?);
        }
        Ok(fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn object(value: Value) -> Object {
        Object::from(value)
    }

    fn raw(text: &str) -> Object {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn objects_are_named_by_name_then_type_and_reason_then_reason() {
        let named = object(json!({"type": "table", "name": "table article", "reason": "gone"}));
        let typed = object(json!({"type": "action", "reason": "Multiple definitions for: order"}));
        let bare = object(json!({"reason": "Ambiguous URL paths: GET /api/rest/a"}));
        let nothing = object(json!({"objects": [1]}));
        assert_eq!(name(&named), "table article");
        assert_eq!(name(&typed), "action: Multiple definitions for: order");
        assert_eq!(name(&bare), "Ambiguous URL paths: GET /api/rest/a");
        assert_eq!(name(&nothing), r#"{"objects":[1]}"#);
        assert_eq!(name(&object(json!({"name": "", "reason": "r"}))), "r");
    }

    #[test]
    fn raw_text_is_named_as_its_parsed_tree_would_be() {
        // Any JSON as a field: numbers printed as parsed, the rest missing.
        assert_eq!(name(&raw(r#"{"name": 1.50, "reason": "r"}"#)), "1.5");
        assert_eq!(name(&raw(r#"{"name": true}"#)), "true");
        assert_eq!(
            name(&raw(r#"{"name": null, "type": "t", "reason": {"a": 1}}"#)),
            "t"
        );
        assert_eq!(
            name(&raw(r#"{"name": ["n"], "reason": "caf\u00e9 \"q\""}"#)),
            "café \"q\""
        );
        // A repeated key counts once, the last one, as in a parsed map.
        assert_eq!(name(&raw(r#"{"name": "a", "name": "b"}"#)), "b");
        assert_eq!(
            name(&raw(r#"{"name": "a", "name": null, "reason": "r"}"#)),
            "r"
        );
        // Entries that are not objects, and the unnamed, name themselves.
        assert_eq!(
            name(&raw(r#"{ "z": 1, "a": [ 2 ] }"#)),
            r#"{"a":[2],"z":1}"#
        );
        assert_eq!(name(&raw("[1, 2]")), "[1,2]");
        assert_eq!(name(&raw(r#""text""#)), r#""text""#);
        assert_eq!(name(&raw("7")), "7");
        assert_eq!(line(&raw(r#"{"reason": "r", "name": 3}"#)), "3: r");
        assert_eq!(sorted_types(&[raw(r#"{"type": 2}"#), raw("[]")]), ["2"]);
    }

    #[test]
    fn lines_read_name_colon_reason() {
        let named = object(json!({"name": "remote_schema countries", "reason": "down"}));
        assert_eq!(line(&named), "remote_schema countries: down");
        let typed = object(json!({"type": "action", "reason": "duplicated"}));
        assert_eq!(line(&typed), "action: duplicated");
        assert_eq!(line(&object(json!({"name": "x"}))), "x");
    }

    #[test]
    fn names_and_types_are_sorted_and_unique() {
        let objects = [
            json!({"type": "table", "name": "b"}),
            json!({"type": "remote_schema", "name": "a"}),
            json!({"type": "table", "name": "b"}),
            json!({"reason": "c"}),
        ]
        .map(object);
        assert_eq!(sorted_names(&objects), ["a", "b", "c"]);
        assert_eq!(sorted_types(&objects), ["remote_schema", "table"]);
    }

    #[test]
    fn shortening_keeps_short_text_and_cuts_on_characters() {
        assert_eq!(shorten("abc", 3), "abc");
        assert_eq!(shorten("abcd", 3), "ab…");
        assert_eq!(shorten("ééééé", 4), "ééé…");
        assert_eq!(shorten("", 0), "");
    }
}
