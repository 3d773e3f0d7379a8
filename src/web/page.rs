//! The control page: a Handlebars template with one card per model, its controls drawn by
//! the `checkbox`, `slider`, `select` and `text` partials from the schema, and the page's
//! own scripts and styles, all compiled into the binary so nothing comes from elsewhere.

use super::error::ApiError;
use super::Context;
use crate::settings::schema::{self, Key, Kind, MODEL_SECTIONS, SCHEMA};
use handlebars::Handlebars;
use serde_json::{json, Value as Json};
use warp::http::StatusCode;
use warp::reply::{Reply, Response};

const TEMPLATES: [(&str, &str); 5] = [
    ("index", include_str!("../../templates/index.hbs")),
    (
        "checkbox",
        include_str!("../../templates/partials/checkbox.hbs"),
    ),
    (
        "slider",
        include_str!("../../templates/partials/slider.hbs"),
    ),
    (
        "select",
        include_str!("../../templates/partials/select.hbs"),
    ),
    ("text", include_str!("../../templates/partials/text.hbs")),
];

const ASSETS: [(&str, &str, &str); 4] = [
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../static/app.js"),
    ),
    (
        "video.js",
        "text/javascript; charset=utf-8",
        include_str!("../../static/video.js"),
    ),
    (
        "token.js",
        "text/javascript; charset=utf-8",
        include_str!("../../static/token.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../../static/style.css"),
    ),
];

/// Keys of a model section that the page leaves to the file and REST (custom networks).
const ADVANCED: [&str; 3] = ["labels", "input_layer", "output_layer"];

pub struct Page {
    registry: Handlebars<'static>,
}

impl Page {
    pub fn new() -> anyhow::Result<Page> {
        let mut registry = Handlebars::new();
        registry.set_strict_mode(true);
        for (name, text) in TEMPLATES {
            if name == "index" {
                registry.register_template_string(name, text)?;
            } else {
                registry.register_partial(name, text)?;
            }
        }
        Ok(Page { registry })
    }

    pub fn render(&self, ctx: &Context) -> Response {
        match self.registry.render("index", &page_data(ctx)) {
            Ok(html) => warp::reply::html(html).into_response(),
            Err(e) => {
                tracing::error!("page template: {e}");
                warp::reply::with_status(e.to_string(), StatusCode::INTERNAL_SERVER_ERROR)
                    .into_response()
            }
        }
    }
}

pub fn asset(name: &str) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, body)) => {
            warp::reply::with_header(*body, "content-type", *content_type).into_response()
        }
        None => ApiError::new(StatusCode::NOT_FOUND, format!("no asset `{name}`")).into_response(),
    }
}

/// Stands in for the page when viewing needs the token: a navigation cannot send it, so
/// static/token.js asks for it and fetches the page with it.
pub fn token_prompt() -> Response {
    let html = warp::reply::html(include_str!("../../templates/token.html"));
    warp::reply::with_status(html, StatusCode::UNAUTHORIZED).into_response()
}

fn page_data(ctx: &Context) -> Json {
    let values = ctx.store.tree();
    let status = super::status::status(ctx);
    let cards: Vec<Json> = MODEL_SECTIONS
        .iter()
        .map(|section| {
            let keys = SCHEMA
                .iter()
                .filter(|k| k.section == *section && !ADVANCED.contains(&k.name));
            let mut card = card(section, keys, &values, &status);
            network_choices(&mut card, section, &values[section]["network"], ctx);
            card
        })
        .collect();
    let input = card(
        "input",
        SCHEMA.iter().filter(|k| k.section == "input"),
        &values,
        &status,
    );
    json!({
        "title": values["server"]["title"],
        "version": env!("CARGO_PKG_VERSION"),
        "cards": cards,
        "input": input,
        "config_error": status["config"]["error"],
        "config_path": ctx.store.path().display().to_string(),
        "ice_servers": ice_servers(&values["webrtc"]["stun"]).to_string(),
    })
}

/// The browser's ICE servers: the configured STUN server, or none (host candidates only).
fn ice_servers(stun: &Json) -> Json {
    match stun.as_str() {
        Some(url) if !url.is_empty() => json!([{"urls": [url]}]),
        _ => json!([]),
    }
}

fn card<'a>(
    section: &str,
    keys: impl Iterator<Item = &'a Key>,
    values: &Json,
    status: &Json,
) -> Json {
    let controls: Vec<Json> = keys
        .filter(|k| k.name != "enabled")
        .flat_map(|k| controls(k, &values[k.section][k.name]))
        .collect();
    let mut title = section.to_owned();
    title[..1].make_ascii_uppercase();
    let enabled = schema::find(section, "enabled").map(|k| control(k, &values[section]["enabled"]));
    json!({
        "section": section,
        "title": title,
        "enabled": enabled,
        "state": status["models"][section]["state"].as_str().unwrap_or(""),
        "controls": controls,
    })
}

/// The catalog models that can serve a section, as a select (a custom path stays a choice).
fn network_choices(card: &mut Json, section: &str, current: &Json, ctx: &Context) {
    let tasks: &[&str] = match section {
        "pose" => &["pose", "hand-pose"],
        "background" | "segmentation" => &["segmentation"],
        "classification" => &["classification"],
        "detection" => &["detection"],
        _ => &["action"],
    };
    let mut names = ctx
        .catalog
        .as_ref()
        .map(|c| c.names_for(tasks))
        .unwrap_or_default();
    if let Some(current) = current.as_str().filter(|c| !names.iter().any(|n| n == c)) {
        names.push(current.to_owned());
    }
    let Some(control) = card["controls"]
        .as_array_mut()
        .and_then(|c| c.iter_mut().find(|c| c["label"] == "network"))
    else {
        return;
    };
    control["partial"] = json!("select");
    control["options"] = names
        .iter()
        .map(|n| json!({"value": n, "selected": current == n}))
        .collect();
}

/// The controls for one key: flags get a checkbox each, everything else one control.
fn controls(key: &Key, value: &Json) -> Vec<Json> {
    match &key.kind {
        Kind::Flags(options) => options
            .iter()
            .map(|flag| {
                let on = value
                    .as_array()
                    .is_some_and(|v| v.iter().any(|f| f == flag));
                json!({
                    "partial": "checkbox", "key": key.path(), "flag": flag,
                    "label": format!("{} {flag}", key.name.replace('_', " ")),
                    "checked": on, "doc": key.doc,
                })
            })
            .collect(),
        _ => vec![control(key, value)],
    }
}

fn control(key: &Key, value: &Json) -> Json {
    let mut c = json!({
        "key": key.path(), "label": key.name.replace('_', " "), "doc": key.doc, "value": value, "flag": "",
    });
    match &key.kind {
        Kind::Bool => {
            c["partial"] = json!("checkbox");
            c["checked"] = value.clone();
        }
        // Wide integer ranges (frame sizes, bitrates) are typed, not dragged.
        Kind::Int { min, max } if max - min > 255 => {
            c["partial"] = json!("text");
            c["type"] = json!("number");
            c["min"] = json!(min);
            c["max"] = json!(max);
        }
        Kind::Int { min, max } => slider(&mut c, json!(min), json!(max), json!(1)),
        Kind::Float { min, max } => {
            slider(&mut c, json!(min), json!(max), json!((max - min) / 100.0))
        }
        Kind::Choice(options) => {
            c["partial"] = json!("select");
            c["options"] = options
                .iter()
                .map(|o| json!({"value": o, "selected": value == o}))
                .collect();
        }
        Kind::Color => text_input(&mut c, "color"),
        _ => text_input(&mut c, "text"),
    }
    c
}

fn text_input(c: &mut Json, kind: &str) {
    c["partial"] = json!("text");
    c["type"] = json!(kind);
    c["min"] = json!("");
    c["max"] = json!("");
}

fn slider(c: &mut Json, min: Json, max: Json, step: Json) {
    c["partial"] = json!("slider");
    c["min"] = min;
    c["max"] = max;
    c["step"] = step;
}
