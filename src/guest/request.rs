//! Reading a request: every problem names the field that is wrong.

use crate::protocol::{Request, SCHEMA_VERSION};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RequestError {
    #[error("request is not a JSON object: {0}")]
    NotJson(String),
    #[error(
        "request field `schema_version` is {found}; this agent speaks version {SCHEMA_VERSION}"
    )]
    Schema { found: String },
    #[error("request field `{field}`: {message}")]
    Field { field: String, message: String },
}

pub fn parse_request(bytes: &[u8]) -> Result<Request, RequestError> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| RequestError::NotJson(e.to_string()))?;
    let object = value
        .as_object()
        .ok_or_else(|| RequestError::NotJson("expected an object".into()))?;
    // The version decides how the rest is read, so it is checked first and on its own.
    match object.get("schema_version") {
        Some(v) if v.as_u64() == Some(SCHEMA_VERSION as u64) => {}
        Some(v) => {
            return Err(RequestError::Schema {
                found: v.to_string(),
            });
        }
        None => {
            return Err(RequestError::Field {
                field: "schema_version".into(),
                message: "missing".into(),
            });
        }
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let field = e.path().to_string();
        let message = e.inner().to_string();
        // Serde reports a missing field at the parent; name the field itself.
        match message
            .strip_prefix("missing field `")
            .and_then(|m| m.strip_suffix('`'))
        {
            Some(missing) => RequestError::Field {
                field: missing.to_string(),
                message: "missing".into(),
            },
            None => RequestError::Field { field, message },
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"schema_version":1,"job_id":"lint","command":"true","timeout_secs":5,
        "run_as_root":false,"workdir":"/workspace","env":{"A":"b"},"path":[],"writable_workspace":false}"#;

    fn with(field: &str, value: serde_json::Value) -> Vec<u8> {
        let mut v: serde_json::Value = serde_json::from_str(GOOD).unwrap();
        if value.is_null() {
            v.as_object_mut().unwrap().remove(field);
        } else {
            v[field] = value;
        }
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn reads_a_good_request() {
        let r = parse_request(GOOD.as_bytes()).unwrap();
        assert_eq!(
            (r.job_id.as_str(), r.timeout_secs, r.env["A"].as_str()),
            ("lint", 5, "b")
        );
        assert_eq!(
            r.shell,
            crate::protocol::LEGACY_SHELL,
            "a request of an older host, without `shell`, runs as it always did"
        );
        let r = parse_request(&with("shell", serde_json::json!(["sh", "-euc"]))).unwrap();
        assert_eq!(r.shell_argv(), ["sh", "-euc", "true"]);
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            parse_request(&with("command", serde_json::Value::Null)),
            parse_request(&with("timeout_secs", "soon".into())),
            parse_request(&with("env", serde_json::json!({"A": 1}))),
            parse_request(&with("schema_version", 2.into())),
            parse_request(&with("schema_version", serde_json::Value::Null)),
            parse_request(b"[1]"),
            parse_request(b"{oops"),
        ];
        let text: Vec<String> = cases
            .into_iter()
            .map(|r| r.unwrap_err().to_string())
            .collect();
        insta::assert_snapshot!(text.join("\n"), @r#"
        request field `command`: missing
        request field `timeout_secs`: invalid type: string "soon", expected u64
        request field `env.A`: invalid type: integer `1`, expected a string
        request field `schema_version` is 2; this agent speaks version 1
        request field `schema_version`: missing
        request is not a JSON object: expected an object
        request is not a JSON object: key must be a string at line 1 column 2
        "#);
    }
}
