//! A finished answer (page, JSON, file) and how it becomes an HTTP response, with the
//! headers every answer carries: nothing from another origin may load, and no content
//! type is guessed.

use std::fs::File;

use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::Response;

/// Pages load only pikaci's own CSS and script, and the live log connects only back.
pub const SECURITY_HEADERS: &[(&str, &str)] = &[
    ("x-content-type-options", "nosniff"),
    (
        "content-security-policy",
        "default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self'; \
         img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    ),
    ("referrer-policy", "no-referrer"),
    ("cache-control", "no-store"),
];

pub enum Content {
    Bytes(Vec<u8>),
    File { file: File, len: u64 },
}

pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Content,
    /// A file name to download the body as.
    pub download: Option<String>,
}

impl Reply {
    pub fn html(status: u16, page: maud::Markup) -> Reply {
        Reply::bytes(
            status,
            "text/html; charset=utf-8",
            page.into_string().into_bytes(),
        )
    }

    pub fn json(status: u16, value: &serde_json::Value) -> Reply {
        let text = serde_json::to_vec_pretty(value).unwrap_or_default();
        Reply::bytes(status, "application/json", text)
    }

    pub fn bytes(status: u16, content_type: &'static str, body: Vec<u8>) -> Reply {
        Reply {
            status,
            content_type,
            body: Content::Bytes(body),
            download: None,
        }
    }

    pub fn file(content_type: &'static str, file: File) -> Reply {
        let len = file.metadata().map_or(0, |m| m.len());
        Reply {
            status: 200,
            content_type,
            body: Content::File { file, len },
            download: None,
        }
    }

    /// The response; a file is streamed from its open descriptor, never read whole.
    pub fn into_response(self) -> Response {
        let (body, len) = match self.body {
            Content::Bytes(bytes) => {
                let len = bytes.len() as u64;
                (Body::from(bytes), len)
            }
            Content::File { file, len } => {
                let file = tokio::fs::File::from_std(file);
                (
                    Body::from_stream(tokio_util::io::ReaderStream::new(file)),
                    len,
                )
            }
        };
        let mut response = Response::new(body);
        *response.status_mut() =
            StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(self.content_type),
        );
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        if let Some(name) = &self.download {
            let value = format!("attachment; filename=\"{}\"", safe_file_name(name));
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(header::CONTENT_DISPOSITION, value);
            }
        }
        with_security_headers(response)
    }
}

pub fn with_security_headers(mut response: Response) -> Response {
    for (name, value) in SECURITY_HEADERS {
        response.headers_mut().insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    response
}

/// A name for `Content-Disposition`: letters, digits, `.`, `_`, `-`; anything else `_`.
fn safe_file_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}
