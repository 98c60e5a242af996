//! The page's CSS and the live log's script, built into the binary: nothing is loaded from
//! the network.

use super::reply::Reply;

pub fn asset(name: &str) -> Reply {
    match name {
        "style.css" => Reply::bytes(200, "text/css; charset=utf-8", STYLE.into()),
        "live.js" => Reply::bytes(200, "text/javascript; charset=utf-8", LIVE.into()),
        _ => Reply::bytes(
            404,
            "text/plain; charset=utf-8",
            b"no such asset\n".to_vec(),
        ),
    }
}

const STYLE: &str = include_str!("assets/style.css");
const LIVE: &str = include_str!("assets/live.js");
