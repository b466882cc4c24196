//! How Hasura's inconsistent objects are named in reports. Entries differ
//! in shape: most have a `name`, some only a `type` and a `reason`, some
//! only a `reason`.

use serde_json::Value;

/// The name that identifies an object in fingerprints and messages: its
/// `name`, else its `type` and `reason`, else its `reason`.
pub fn name(object: &Value) -> String {
    match (field(object, "name"), field(object, "type"), reason(object)) {
        (Some(name), _, _) => name,
        (None, Some(ty), Some(reason)) => format!("{ty}: {reason}"),
        (None, None, Some(reason)) => reason,
        (None, Some(ty), None) => ty,
        // Not a shape Hasura sends; the whole entry still names it stably.
        (None, None, None) => object.to_string(),
    }
}

/// The object's `reason`, when it has one.
pub fn reason(object: &Value) -> Option<String> {
    field(object, "reason")
}

/// One line per object for people: `name: reason`, where a nameless
/// object is already named by its type and reason.
pub fn line(object: &Value) -> String {
    match (field(object, "name"), reason(object)) {
        (Some(name), Some(reason)) => format!("{name}: {reason}"),
        _ => name(object),
    }
}

/// The names of every object, sorted, each once: the same set of
/// inconsistencies always gives the same list.
pub fn sorted_names(objects: &[Value]) -> Vec<String> {
    let mut names: Vec<String> = objects.iter().map(name).collect();
    names.sort();
    names.dedup();
    names
}

/// The `type` of every object that has one, sorted, each once.
pub fn sorted_types(objects: &[Value]) -> Vec<String> {
    let mut types: Vec<String> = objects.iter().filter_map(|o| field(o, "type")).collect();
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

/// A field as text: strings as they are, other scalars printed; empty
/// strings, null, arrays and objects count as missing.
fn field(object: &Value, key: &str) -> Option<String> {
    match object.get(key)? {
        Value::String(text) if text.is_empty() => None,
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn objects_are_named_by_name_then_type_and_reason_then_reason() {
        let named = json!({"type": "table", "name": "table article", "reason": "gone"});
        let typed = json!({"type": "action", "reason": "Multiple definitions for: order"});
        let bare = json!({"reason": "Ambiguous URL paths: GET /api/rest/a"});
        let nothing = json!({"objects": [1]});
        assert_eq!(name(&named), "table article");
        assert_eq!(name(&typed), "action: Multiple definitions for: order");
        assert_eq!(name(&bare), "Ambiguous URL paths: GET /api/rest/a");
        assert_eq!(name(&nothing), r#"{"objects":[1]}"#);
        assert_eq!(name(&json!({"name": "", "reason": "r"})), "r");
    }

    #[test]
    fn lines_read_name_colon_reason() {
        let named = json!({"name": "remote_schema countries", "reason": "down"});
        assert_eq!(line(&named), "remote_schema countries: down");
        let typed = json!({"type": "action", "reason": "duplicated"});
        assert_eq!(line(&typed), "action: duplicated");
        assert_eq!(line(&json!({"name": "x"})), "x");
    }

    #[test]
    fn names_and_types_are_sorted_and_unique() {
        let objects = [
            json!({"type": "table", "name": "b"}),
            json!({"type": "remote_schema", "name": "a"}),
            json!({"type": "table", "name": "b"}),
            json!({"reason": "c"}),
        ];
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
