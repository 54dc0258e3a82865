//! The backbone's central policy and its edge agent.
//!
//! One TOML document ([`Policy`]) describes the backbone: its edges, its clients, which
//! edge hosts each client's tunnel (primary and backup) and the preferences between
//! them. `backbone-policy apply` validates it whole and writes it to etcd in one
//! transaction ([`store`]); on each edge, `backbone-policy agent` follows it from a
//! revision, computes the edge's part ([`part`]) and applies what changed through the
//! appliance's control API as one validated batch ([`agent`]), reporting under an etcd
//! lease what it applied and what the appliance runs, and what its edge forwards;
//! `backbone-policy audit paths` ([`audit`]) reads those tables and says which edges
//! each client pair's traffic crosses, both ways.
//!
//! Nothing here knows DPDK; the appliance is reached through its control socket only.
#![forbid(unsafe_code)]

pub mod agent;
pub mod appliance;
pub mod audit;
pub mod diff;
mod error;
pub mod model;
pub mod part;
pub mod remote;
pub mod store;

pub use error::PolicyError;
pub use model::Policy;
