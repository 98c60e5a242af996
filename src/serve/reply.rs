//! A finished answer (page, JSON, file) and how it is sent, with the headers every answer
//! carries: nothing from another origin may load, and no content type is guessed.

use std::fs::File;

use tiny_http::{Header, Request, Response, StatusCode};

/// Pages load only pikaci's own CSS and script, and the live log connects only back.
pub const SECURITY_HEADERS: &[(&str, &str)] = &[
    ("X-Content-Type-Options", "nosniff"),
    (
        "Content-Security-Policy",
        "default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self'; \
         img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    ),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
];

pub enum Body {
    Bytes(Vec<u8>),
    File { file: File, len: u64 },
}

pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Body,
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
            body: Body::Bytes(body),
            download: None,
        }
    }

    pub fn file(content_type: &'static str, file: File) -> Reply {
        let len = file.metadata().map_or(0, |m| m.len());
        Reply {
            status: 200,
            content_type,
            body: Body::File { file, len },
            download: None,
        }
    }

    pub fn send(self, request: Request) -> std::io::Result<()> {
        let mut headers = vec![header("Content-Type", self.content_type)];
        if let Some(name) = &self.download {
            let value = format!("attachment; filename=\"{}\"", safe_file_name(name));
            headers.push(header("Content-Disposition", &value));
        }
        headers.extend(SECURITY_HEADERS.iter().map(|(k, v)| header(k, v)));
        let status = StatusCode(self.status);
        match self.body {
            Body::Bytes(bytes) => {
                let len = bytes.len();
                request.respond(Response::new(status, headers, &bytes[..], Some(len), None))
            }
            Body::File { file, len } => {
                let len = usize::try_from(len).ok();
                request.respond(Response::new(status, headers, file, len, None))
            }
        }
    }
}

pub fn header(name: &str, value: &str) -> Header {
    // Only our own constant names and values made safe above reach here.
    Header::from_bytes(name.as_bytes(), value.as_bytes())
        .unwrap_or_else(|()| Header::from_bytes(&b"X-Invalid"[..], &b"1"[..]).expect("ascii"))
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
