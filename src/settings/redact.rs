//! The one redaction of secrets in settings. Every place that shows a setting's value (the
//! REST tree, events, errors, status, the page, logs, metrics) goes through here, so a
//! camera's password or the API token never leaves the process.
//!
//! Two kinds of secret: a whole value (`server.auth_token`, `mqtt.password`) and the
//! password in a URI's userinfo (`input.uri`, `rtsp://user:password@camera/...`; a broker
//! URL refuses one, but the refusal must not show it). A write that sends back the
//! masked form keeps the secret it stands for, so a page or script can round-trip the tree.

use serde_json::Value as Json;

/// What a secret is shown as.
pub const MASK: &str = "***";

/// Keys whose whole value is secret.
const WHOLE: &[&str] = &["server.auth_token", "mqtt.password"];
/// Keys holding a URI whose userinfo may carry a password.
const URIS: &[&str] = &["input.uri", "mqtt.url"];

/// A URI's userinfo, split out: `scheme://` + userinfo + `@rest`.
pub struct Userinfo<'a> {
    pub prefix: &'a str,
    pub user: &'a str,
    pub password: Option<&'a str>,
    /// After the `@`: host, port, path.
    pub rest: &'a str,
}

/// Finds the userinfo of `scheme://user[:password]@host/...`. Passwords may hold `/` and
/// `@` unescaped (cameras' web pages make people type them so): the userinfo runs to the
/// last `@`, unless that `@` is plainly inside a path (a `/` before any `:`).
pub fn userinfo(uri: &str) -> Option<Userinfo<'_>> {
    let start = uri.find("://")? + 3;
    let (prefix, after) = uri.split_at(start);
    let at = after.rfind('@')?;
    let info = &after[..at];
    if let Some(slash) = info.find('/') {
        if !info[..slash].contains(':') {
            return None;
        }
    }
    let (user, password) = match info.split_once(':') {
        Some((user, password)) => (user, Some(password)),
        None => (info, None),
    };
    Some(Userinfo {
        prefix,
        user,
        password,
        rest: &after[at + 1..],
    })
}

/// `rtsp://admin:secret@cam/live` -> `rtsp://admin:***@cam/live`; a URI without a password
/// is unchanged.
pub fn uri(uri: &str) -> String {
    match userinfo(uri) {
        Some(Userinfo {
            prefix,
            user,
            password: Some(_),
            rest,
        }) => format!("{prefix}{user}:{MASK}@{rest}"),
        _ => uri.to_owned(),
    }
}

/// The value of `key` (`section.name`) as it may be shown.
pub fn value(key: &str, value: &Json) -> Json {
    match value.as_str() {
        Some("") => value.clone(),
        Some(_) if WHOLE.contains(&key) => Json::from(MASK),
        Some(text) if URIS.contains(&key) => Json::from(uri(text)),
        _ => value.clone(),
    }
}

/// A `{section: {key: value}}` tree as it may be shown.
pub fn tree(mut tree: Json) -> Json {
    if let Some(sections) = tree.as_object_mut() {
        for (section, keys) in sections {
            if let Some(keys) = keys.as_object_mut() {
                for (name, v) in keys {
                    *v = value(&format!("{section}.{name}"), v);
                }
            }
        }
    }
    tree
}

/// A message about `raw` (a value offered for `key`) with the secrets in it masked.
pub fn message(key: &str, raw: &Json, message: String) -> String {
    secrets(key, raw)
        .into_iter()
        .fold(message, |text, secret| text.replace(secret, MASK))
}

/// The secret parts of a value, longest first (so a password inside the token is masked too).
fn secrets<'a>(key: &str, raw: &'a Json) -> Vec<&'a str> {
    let Some(text) = raw.as_str().filter(|t| !t.is_empty()) else {
        return Vec::new();
    };
    if WHOLE.contains(&key) {
        return vec![text];
    }
    if URIS.contains(&key) {
        if let Some(password) = userinfo(text).and_then(|u| u.password) {
            return [password]
                .into_iter()
                .filter(|p| !p.is_empty() && *p != MASK)
                .collect();
        }
    }
    Vec::new()
}

/// A value written for `key`: where it carries the mask in place of a secret, the secret of
/// `current` is put back, so sending back what was shown changes nothing.
pub fn restore(key: &str, new: &Json, current: &Json) -> Json {
    let (Some(text), Some(current_text)) = (new.as_str(), current.as_str()) else {
        return new.clone();
    };
    if WHOLE.contains(&key) && text == MASK {
        return current.clone();
    }
    if URIS.contains(&key) {
        if let (Some(new_info), Some(old_password)) = (
            userinfo(text),
            userinfo(current_text).and_then(|u| u.password),
        ) {
            if new_info.password == Some(MASK) {
                let Userinfo {
                    prefix, user, rest, ..
                } = new_info;
                return Json::from(format!("{prefix}{user}:{old_password}@{rest}"));
            }
        }
    }
    new.clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_password_is_masked_wherever_it_has_slashes_or_ats() {
        assert_eq!(
            uri("rtsp://admin:secret@10.0.0.5:554/stream1"),
            "rtsp://admin:***@10.0.0.5:554/stream1"
        );
        assert_eq!(
            uri("rtsp://admin:se/cr@t@cam/live"),
            "rtsp://admin:***@cam/live"
        );
        assert_eq!(uri("rtsp://cam/a@b"), "rtsp://cam/a@b");
        assert_eq!(uri("rtsp://token@cam/live"), "rtsp://token@cam/live");
        assert_eq!(uri("images:/srv/pictures"), "images:/srv/pictures");
    }

    #[test]
    fn whole_secrets_and_uri_passwords_are_masked_in_values_trees_and_messages() {
        assert_eq!(value("server.auth_token", &json!("t0ken")), json!("***"));
        assert_eq!(value("server.auth_token", &json!("")), json!(""));
        assert_eq!(value("mqtt.password", &json!("hunter2")), json!("***"));
        assert_eq!(value("server.title", &json!("t0ken")), json!("t0ken"));
        let tree = tree(json!({"input": {"uri": "rtsp://a:pw@cam/x", "fps": 30}}));
        assert_eq!(
            tree,
            json!({"input": {"uri": "rtsp://a:***@cam/x", "fps": 30}})
        );
        let raw = json!("rtps://a:p/w@cam/x");
        let said = message("input.uri", &raw, format!("unknown scheme in {raw}"));
        assert_eq!(said, "unknown scheme in \"rtps://a:***@cam/x\"");
    }

    #[test]
    fn writing_back_the_mask_keeps_the_secret() {
        let current = json!("rtsp://a:pw@cam/x");
        assert_eq!(
            restore("input.uri", &json!("rtsp://a:***@cam/y"), &current),
            json!("rtsp://a:pw@cam/y")
        );
        assert_eq!(
            restore("input.uri", &json!("rtsp://a:new@cam/x"), &current),
            json!("rtsp://a:new@cam/x")
        );
        assert_eq!(
            restore("server.auth_token", &json!("***"), &json!("t0ken")),
            json!("t0ken")
        );
    }
}
