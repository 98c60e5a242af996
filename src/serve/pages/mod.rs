//! Server-side HTML (maud escapes every value it is given).

mod graph;
mod job;
mod layout;
mod run;
mod runs;
mod timeline;

pub use job::{JobPage, job_page};
pub use layout::error_page;
pub use run::run_page;
pub use runs::runs_page;
