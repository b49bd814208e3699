//! The last failures: a bounded record of the executions that ended in an
//! error (newest first), for the operator page (`GET /server`). Fed from the
//! one place an execution's outcome is counted.

use std::{collections::VecDeque, sync::Mutex, time::SystemTime};

use serde::Serialize;

use crate::lock;

/// How many failures are kept.
pub const KEPT: usize = 50;

/// A message longer than this is cut (a node's error may be any size).
const MESSAGE_CHARS: usize = 2000;

/// One failed execution.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailureRecord {
    /// When it ended, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The node's uid.
    pub node: String,
    /// The workflow instance the execution belonged to.
    pub instance_id: String,
    /// `error`, `aborted`, `timeout`, `crashed`, `internal`… (as in the metrics).
    pub outcome: &'static str,
    /// The error's message, cut after 2000 characters.
    pub message: String,
}

/// The last [`KEPT`] failures. One per executor.
#[derive(Debug, Default)]
pub struct FailureLog(Mutex<VecDeque<FailureRecord>>);

impl FailureLog {
    /// Records a failure, forgetting the oldest beyond [`KEPT`].
    pub fn record(&self, node: &str, instance_id: &str, outcome: &'static str, message: &str) {
        let message = match message.char_indices().nth(MESSAGE_CHARS) {
            Some((at, _)) => format!("{}…", &message[..at]),
            None => message.to_owned(),
        };
        let record = FailureRecord {
            at_ms: unix_ms(SystemTime::now()),
            node: node.to_owned(),
            instance_id: instance_id.to_owned(),
            outcome,
            message,
        };
        let mut kept = lock(&self.0);
        if kept.len() == KEPT {
            kept.pop_front();
        }
        kept.push_back(record);
    }

    /// The failures kept, newest first.
    pub fn recent(&self) -> Vec<FailureRecord> {
        lock(&self.0).iter().rev().cloned().collect()
    }
}

/// Milliseconds since the Unix epoch (0 before it).
pub fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_fifty_newest_first() {
        let log = FailureLog::default();
        for i in 0..60 {
            log.record("node", "wf-1", "error", &format!("failure {i}"));
        }
        let recent = log.recent();
        assert_eq!(recent.len(), KEPT);
        assert_eq!(recent[0].message, "failure 59");
        assert_eq!(recent[KEPT - 1].message, "failure 10");
        assert!(recent[0].at_ms > 0);
    }

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        let log = FailureLog::default();
        log.record("node", "wf-1", "error", &"é".repeat(5000));
        let message = &log.recent()[0].message;
        assert_eq!(message.chars().count(), MESSAGE_CHARS + 1);
        assert!(message.ends_with('…'));
    }
}
