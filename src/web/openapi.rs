//! `GET /api/v1/openapi.json`: an OpenAPI 3 description of every route, with the settings'
//! types, ranges and defaults taken from the schema.

use crate::settings::schema::{self, Kind, MODEL_SECTIONS, SCHEMA};
use serde_json::{json, Map, Value as Json};

pub fn document() -> Json {
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "visiond",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Live multi-DNN video analyser. Settings are the config file's sections and keys; every write goes to the file first."
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Config": config_schema(Tree::Settings),
                "ConfigPatch": config_schema(Tree::Patch),
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {"type": "string"}, "key": {"type": "string", "description": "section.key"}}
                }
            }
        },
        "paths": paths(),
    })
}

/// An MQTT topic prefix: no wildcards, no `/` at either end, not a `$` topic.
const TOPIC: &str = "^[^$/+#]([^+#]*[^/+#])?$";
const TOPIC_OR_EMPTY: &str = "^([^$/+#]([^+#]*[^/+#])?)?$";

fn property_schema(kind: &Kind) -> Json {
    match kind {
        Kind::Bool => json!({"type": "boolean"}),
        Kind::Int { min, max } => json!({"type": "integer", "minimum": min, "maximum": max}),
        Kind::Float { min, max } => json!({"type": "number", "minimum": min, "maximum": max}),
        Kind::Text | Kind::SocketAddr | Kind::InputUri => json!({"type": "string"}),
        Kind::BrokerUrl => json!({"type": "string", "pattern": "^mqtts?://[^/@]+/?$"}),
        Kind::Topic { empty_ok } => {
            let pattern = if *empty_ok { TOPIC_OR_EMPTY } else { TOPIC };
            json!({"type": "string", "pattern": pattern})
        }
        Kind::Color => json!({"type": "string", "pattern": "^#[0-9a-fA-F]{6}$"}),
        Kind::Choice(options) => json!({"type": "string", "enum": options}),
        Kind::Flags(options) => {
            json!({"type": "array", "uniqueItems": true, "items": {"type": "string", "enum": options}})
        }
        Kind::TextList => json!({"type": "array", "items": {"type": "string"}}),
        Kind::Origins => {
            json!({"type": "array", "items": {"type": "string", "pattern": crate::settings::schema::ORIGIN_PATTERN}})
        }
    }
}

/// The settings tree as GET answers it, or as a merge patch names a part of it.
#[derive(Clone, Copy, PartialEq)]
enum Tree {
    Settings,
    /// Any sections, any of their keys; `null` resets a key to its default.
    Patch,
}

fn config_schema(tree: Tree) -> Json {
    let mut sections = Map::new();
    for section in schema::sections() {
        let mut properties = Map::new();
        for key in SCHEMA.iter().filter(|k| k.section == section) {
            let mut property = property_schema(&key.kind);
            property["description"] = Json::from(key.doc);
            match tree {
                Tree::Settings => property["default"] = key.default.clone(),
                Tree::Patch => property["nullable"] = Json::Bool(true),
            }
            properties.insert(key.name.to_owned(), property);
        }
        sections.insert(
            section.to_owned(),
            json!({"type": "object", "additionalProperties": false, "properties": properties}),
        );
    }
    json!({"type": "object", "additionalProperties": false, "properties": sections})
}

fn error_responses(codes: &[&str]) -> Map<String, Json> {
    let meaning = |code: &str| match code {
        "400" => "bad value or type; `key` names the setting",
        "401" => "missing or wrong bearer token",
        "403" => "cross-origin write",
        "404" => "no such property",
        "409" => "the file on disk is broken; fix it first",
        "413" => "body over 64 KiB",
        "415" => "not JSON",
        _ => "the file could not be written; nothing changed",
    };
    codes
        .iter()
        .map(|code| {
            let body = json!({"description": meaning(code), "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
            (code.to_string(), body)
        })
        .collect()
}

fn json_ok(description: &str, schema: Json) -> Json {
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

fn with_errors(mut ok: Map<String, Json>, codes: &[&str]) -> Json {
    ok.extend(error_responses(codes));
    Json::Object(ok)
}

fn read(summary: &str, description: &str, schema: Json) -> Json {
    json!({"get": {"summary": summary, "responses": {"200": json_ok(description, schema)}}})
}

fn paths() -> Json {
    let write_errors = ["400", "401", "403", "404", "409", "413", "415", "503"];
    let section_names: Vec<&str> = schema::sections();
    let property_params = json!([
        {"name": "section", "in": "path", "required": true, "schema": {"type": "string", "enum": section_names}},
        {"name": "key", "in": "path", "required": true, "schema": {"type": "string"}, "description": "a key of that section (see the Config schema)"}
    ]);
    let any_value = json!({"description": "the bare JSON value: 0.5, true, \"nanodet\""});
    let property = json!({
        "parameters": property_params,
        "get": {"summary": "One setting", "responses": with_errors(single("200", json_ok("its value", any_value.clone())), &["404"])},
        "put": {
            "summary": "Change one setting: written to the file (comments kept), then applied",
            "security": [{"bearer": []}],
            "requestBody": {"required": true, "content": {"application/json": {"schema": any_value}}},
            "responses": with_errors(single("200", json_ok("the new value", json!({}))), &write_errors)
        }
    });
    let mut paths = Map::new();
    paths.insert("/api/v1/config".into(), json!({
        "get": {"summary": "Every setting, the same tree as the file", "responses": {"200": json_ok("settings", json!({"$ref": "#/components/schemas/Config"}))}},
        "patch": {
            "summary": "JSON merge patch (RFC 7396) of several settings, all or nothing; null resets a key to its default",
            "security": [{"bearer": []}],
            "requestBody": {"required": true, "content": {
                "application/merge-patch+json": {"schema": {"$ref": "#/components/schemas/ConfigPatch"}},
                "application/json": {"schema": {"$ref": "#/components/schemas/ConfigPatch"}}
            }},
            "responses": with_errors(single("200", json_ok("every setting after the patch", json!({"$ref": "#/components/schemas/Config"}))), &write_errors)
        }
    }));
    paths.insert("/api/v1/config/{section}/{key}".into(), property.clone());
    let mut alias = property;
    alias["parameters"][0]["schema"]["enum"] = json!(MODEL_SECTIONS);
    alias["get"]["summary"] =
        json!("One model setting (the seed's path, an alias of /api/v1/config/{section}/{key})");
    paths.insert("/{section}/{key}".into(), alias);
    paths.insert(
        "/api/v1/status".into(),
        read(
            "Config, models, pipeline, input, peers and mqtt (state: disabled | connecting | connected | error, with error, broker, topic, dropped, control)",
            "status",
            json!({"type": "object"}),
        ),
    );
    paths.insert(
        "/api/v1/results".into(),
        read(
            "The latest frame's results per enabled model",
            "results",
            json!({"type": "object"}),
        ),
    );
    paths.insert(
        "/api/v1/models".into(),
        read("The model catalog", "catalog", json!({"type": "array"})),
    );
    paths.insert("/api/v1/events".into(), json!({"get": {
        "summary": "Server-Sent Events: change {key, value, source: file | rest | mqtt}, config_error {errors}, config_ok, status {status, results} once a second",
        "responses": {"200": {"description": "event stream", "content": {"text/event-stream": {}}}}
    }}));
    paths.insert(
        "/api/v1/openapi.json".into(),
        read("This document", "OpenAPI 3", json!({"type": "object"})),
    );
    paths.insert("/metrics".into(), json!({"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text format 0.0.4", "content": {"text/plain": {}}}}}}));
    for (path, summary, errors) in [
        (
            "/whep",
            "WHEP: watch the annotated output",
            json!({"503": {"description": "webrtc.max_viewers reached"}}),
        ),
        (
            "/whip",
            "WHIP: send video in (input.uri = \"webrtc\"); replaces any publisher",
            json!({"409": {"description": "input.uri is not webrtc"}}),
        ),
    ] {
        let mut responses = json!({
            "201": {"description": "the SDP answer; Location names the session",
                    "headers": {"Location": {"schema": {"type": "string"}}},
                    "content": {"application/sdp": {"schema": {"type": "string"}}}},
            "400": {"description": "not a usable SDP offer"},
            "401": {"description": "token missing"},
            "415": {"description": "not application/sdp"}
        });
        responses
            .as_object_mut()
            .expect("an object")
            .extend(errors.as_object().cloned().unwrap_or_default());
        paths.insert(path.into(), json!({"post": {
            "summary": summary,
            "security": [{"bearer": []}, {}],
            "requestBody": {"required": true, "content": {"application/sdp": {"schema": {"type": "string"}}}},
            "responses": responses
        }}));
        paths.insert(format!("{path}/{{id}}"), json!({
            "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
            "delete": {"summary": "End the session", "responses": {"200": {"description": "ended"}, "404": {"description": "no such session"}}}
        }));
    }
    paths.insert("/".into(), json!({"get": {"summary": "The control page", "responses": {"200": {"description": "HTML", "content": {"text/html": {}}}}}}));
    paths.insert("/static/{file}".into(), json!({
        "parameters": [{"name": "file", "in": "path", "required": true, "schema": {"type": "string"}}],
        "get": {"summary": "The page's scripts and styles", "responses": {"200": {"description": "asset"}, "404": {"description": "no such asset"}}}
    }));
    Json::Object(paths)
}

fn single(code: &str, body: Json) -> Map<String, Json> {
    let mut map = Map::new();
    map.insert(code.to_owned(), body);
    map
}
