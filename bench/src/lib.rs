//! Shared by the benchmark binaries: the load generator and the helpers that
//! start servers and measure them.

pub mod frames;
pub mod load;
pub mod probe;
pub mod servers;
pub mod stamp;
