//! Watching `nodes_path`: notify events, debounced by notify-debouncer-full,
//! each batch followed by one reconcile pass (see [`crate::reconcile`]);
//! with `build_sources`, changed node crate sources are queued for a build.

use std::{collections::HashSet, path::PathBuf, sync::mpsc, time::Duration};

use notify_debouncer_full::{
    DebounceEventResult, Debouncer, RecommendedCache, new_debouncer,
    notify::{EventKind, RecommendedWatcher, RecursiveMode},
};

use crate::{build::SourceBuilder, reconcile::Reconciler};

/// The running watcher; dropping it stops watching.
pub struct Watcher {
    _debouncer: Debouncer<RecommendedWatcher, RecommendedCache>,
}

/// Starts watching the reconciler's root; every debounced batch of events
/// runs one reconcile pass on a dedicated thread, one at a time, off the
/// request path.
pub fn watch(
    mut reconciler: Reconciler,
    debounce: Duration,
    builder: Option<SourceBuilder>,
) -> notify_debouncer_full::notify::Result<Watcher> {
    let (events, batches) = mpsc::channel::<DebounceEventResult>();
    // The debouncer only releases events on a tick (default: a quarter of
    // the window); a short tick keeps a swap within ~20 ms of the window.
    let tick = (debounce / 4).clamp(Duration::from_millis(1), Duration::from_millis(20));
    let mut debouncer = new_debouncer(debounce, Some(tick), events)?;
    debouncer.watch(reconciler.root(), RecursiveMode::Recursive)?;
    let root = reconciler.root().to_owned();
    tracing::info!(nodes_path = %root.display(), debounce_ms = debounce.as_millis() as u64, "watching for library changes");
    std::thread::Builder::new()
        .name("nano-watcher".to_owned())
        .spawn(move || {
            for batch in batches {
                match batch {
                    Ok(events) => {
                        // Reads are not changes, and ignoring them matters:
                        // hashing a library (or cargo reading sources) would
                        // otherwise trigger the next pass, forever.
                        let touched: HashSet<PathBuf> = events
                            .iter()
                            .filter(|e| !matches!(e.kind, EventKind::Access(_)))
                            .flat_map(|e| e.paths.iter().cloned())
                            .collect();
                        if touched.is_empty() {
                            continue;
                        }
                        tracing::debug!(events = events.len(), paths = touched.len(), "file events");
                        if let Some(builder) = &builder {
                            builder.sources_changed(&touched);
                        }
                        if let Err(err) = reconciler.reconcile(&touched) {
                            tracing::error!(nodes_path = %root.display(), %err, "cannot rescan the nodes folder");
                        }
                    }
                    Err(errors) => {
                        for err in errors {
                            tracing::warn!(%err, "file watcher error");
                        }
                    }
                }
            }
        })
        .map_err(notify_debouncer_full::notify::Error::io)?;
    Ok(Watcher { _debouncer: debouncer })
}
