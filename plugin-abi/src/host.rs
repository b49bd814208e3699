//! The host a [`Context`](crate::Context) runs against: the server across the
//! FFI boundary (`export.rs`), or the `testing` harness.
//!
//! Its own module so that the node API (`context.rs`) and the host services
//! (`services.rs`) both depend on it instead of on each other.

/// Where a node's statuses go, where its abort flag comes from, and who
/// answers its host service calls.
pub(crate) trait Host {
    fn send_status(&self, status_json: &str);

    fn is_aborted(&self) -> bool;

    /// One host service call (see [`crate::host_wire`]): a JSON
    /// [`Call`](crate::host_wire::Call) and its body in; the answer's JSON
    /// and bytes out, or a JSON [`Failure`](crate::host_wire::Failure).
    fn call(&self, request: &str, body: &[u8]) -> Result<(String, Vec<u8>), String>;
}
