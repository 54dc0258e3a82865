//! The tables a worker reads: tunnels, neighbours, our addresses, routes, all gathered in
//! one immutable [`Snapshot`] made by a validating [`SnapshotBuilder`], and handed to the
//! workers by a [`Publisher`].

pub mod publish;
pub mod snapshot;
pub mod tunnel;

pub use publish::{Publisher, Reader, Versioned};
pub use snapshot::{
    BuildError, IcmpLimit, PortEntry, PortRoles, RouteLayer, RouteTarget, Snapshot,
    SnapshotBuilder, Target,
};
pub use tunnel::{
    DfPolicy, DscpPolicy, Outer6, SequenceCheck, TtlPolicy, Tunnel, TunnelHot6, TunnelId,
    TunnelKey, TunnelKey6, TunnelMode, TunnelState, TunnelTable, PATH_MTU_MIN_INNER,
};

/// An ethdev port index, as DPDK numbers them.
pub type PortIndex = u16;
