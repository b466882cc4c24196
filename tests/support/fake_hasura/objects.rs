//! Realistic inconsistent objects, shaped as Hasura v2 reports them, for
//! the fake to answer.

use serde_json::{Value, json};

/// A remote schema that was down when the schema cache was built.
pub fn remote_schema_down(name: &str, url: &str) -> Value {
    let host = url
        .split("://")
        .nth(1)
        .unwrap_or(url)
        .split(['/', ':'])
        .next()
        .unwrap_or("");
    json!({
        "type": "remote_schema",
        "name": format!("remote_schema {name}"),
        "definition": {
            "name": name,
            "definition": {"url": url, "timeout_seconds": 60, "forward_client_headers": false},
            "comment": null,
        },
        "reason": format!(
            "Inconsistent object: HTTP exception occurred while sending the request to \"{url}\""
        ),
        "message": {
            "type": "http_exception",
            "message": "Connection failure: Network.Socket.connect: <socket: 27>: does not \
                        exist (Connection refused)",
            "request": {
                "host": host,
                "method": "POST",
                "path": "/graphql",
                "port": 4000,
                "secure": false,
                "queryString": "",
                "requestHeaders": {"Content-Type": "application/json"},
                "responseTimeout": "ResponseTimeoutMicro 60000000",
            },
        },
    })
}

/// A tracked table that a job dropped and recreated; `table` may be
/// `schema.table`, public tables are named without their schema.
pub fn table_recreated(table: &str, source: &str) -> Value {
    let (schema, name) = table.split_once('.').unwrap_or(("public", table));
    let shown = if schema == "public" {
        name.to_string()
    } else {
        table.to_string()
    };
    json!({
        "type": "table",
        "name": format!("table {shown} in source {source}"),
        "definition": {"source": source, "table": {"schema": schema, "name": name}},
        "reason": format!("Inconsistent object: no such table/view exists in source: \"{shown}\""),
    })
}

/// A database source that cannot be reached.
pub fn source_unreachable(source: &str) -> Value {
    json!({
        "type": "source",
        "name": format!("source {source}"),
        "definition": source,
        "reason": "Inconsistent object: connection error",
        "message": format!(
            "connection to server at \"{source}-db\", port 5432 failed: Connection refused\n\
             \tIs the server running on that host and accepting TCP/IP connections?\n"
        ),
    })
}

/// Two permissions that clash: no top-level `type` or `name`.
pub fn conflicting_objects(role: &str) -> Value {
    let name = format!("permission {role} on table article in source default");
    let object = json!({
        "type": "select_permission",
        "name": name,
        "definition": {"role": role, "table": "article", "permission": {"columns": "*"}},
    });
    json!({
        "reason": format!("Conflicting objects: {name}, {name}"),
        "objects": [object.clone(), object],
    })
}

/// Two definitions of one action: `type` but no `name`.
pub fn duplicate_definitions(action: &str) -> Value {
    let definition = json!({"name": action, "definition": {"kind": "synchronous"}});
    json!({
        "reason": format!("Multiple definitions for: {action}"),
        "type": "action",
        "definitions": [definition.clone(), definition],
    })
}

/// REST endpoints whose URLs overlap: only `reason` and `conflicts`.
pub fn ambiguous_rest_endpoints(path: &str) -> Value {
    json!({
        "reason": format!("Ambiguous URL paths: GET /api/rest/{path}/:id and GET /api/rest/{path}/latest"),
        "conflicts": [
            {"name": format!("{path}_by_id"), "url": format!("{path}/:id"), "methods": ["GET"]},
            {"name": format!("{path}_latest"), "url": format!("{path}/latest"), "methods": ["GET"]},
        ],
    })
}

/// An inherited role whose parents' permissions cannot be merged.
pub fn inherited_role_conflict(role: &str) -> Value {
    json!({
        "type": "inherited role permission inconsistency",
        "name": role,
        "reason": format!(
            "Could not inherit permission for the role \"{role}\" for the entity: \
             \"select permission, table: article, source: \"default\"\""
        ),
        "entity": {"permission_type": "select", "source": "default", "table": "article"},
    })
}

/// `n` distinct objects cycling through every shape above, common ones first.
pub fn sample(n: usize) -> Vec<Value> {
    (0..n).map(sample_one).collect()
}

fn sample_one(i: usize) -> Value {
    const SHAPES: usize = 7;
    let suffix = if i < SHAPES {
        String::new()
    } else {
        format!("_{i}")
    };
    match i % SHAPES {
        0 => remote_schema_down(
            &format!("countries{suffix}"),
            "http://countries:4000/graphql",
        ),
        1 => table_recreated(&format!("article{suffix}"), "default"),
        2 => source_unreachable(&format!("analytics{suffix}")),
        3 => conflicting_objects(&format!("user{suffix}")),
        4 => duplicate_definitions(&format!("create_order{suffix}")),
        5 => ambiguous_rest_endpoints(&format!("article{suffix}")),
        _ => inherited_role_conflict(&format!("editor{suffix}")),
    }
}
