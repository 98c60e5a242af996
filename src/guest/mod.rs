//! The agent that runs inside a guest: `pikaci-guest run REQUEST` (protocol v1, see
//! `crate::protocol`). It always writes a result, also when the request is bad.

mod agent;
mod power;
mod request;
mod user;

pub use agent::{Agent, run_request};
pub use power::power_off;
pub use request::{RequestError, parse_request};
