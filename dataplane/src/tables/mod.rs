//! The tables a worker reads: tunnels, neighbours, our addresses, routes, all gathered in
//! one immutable [`Snapshot`] made by a validating [`SnapshotBuilder`].

pub mod snapshot;
pub mod tunnel;

pub use snapshot::{
    BuildError, IcmpLimit, PortEntry, PortRoles, RouteTarget, Snapshot, SnapshotBuilder, Target,
};
pub use tunnel::{
    DfPolicy, DscpPolicy, SequenceCheck, TtlPolicy, Tunnel, TunnelId, TunnelKey, TunnelMode,
    TunnelState, TunnelTable,
};

/// An ethdev port index, as DPDK numbers them.
pub type PortIndex = u16;
