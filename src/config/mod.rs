//! `pikaci.toml`: found, parsed and validated once into the types of [`model`].

mod error;
mod find;
pub mod hypervisor;
mod load;
mod model;
mod overrides;
mod raw;
pub(crate) mod units;

pub use error::ConfigError;
pub use find::{CONFIG_FILE, find_config};
pub use load::{load, parse, parse_host};
pub use model::*;
pub use overrides::{Overrides, one_host};
pub use units::parse_size;
