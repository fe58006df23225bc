//! wasmhook: database-mutation events in, signed and reliable webhooks out.
//!
//! The data flow, one module per stage: [`source`] -> [`observer`] ->
//! [`payload`] -> the outbox -> [`delivery`] (with [`signing`] and the retry
//! policy) -> the DLQ; the outbox and the DLQ are kept by [`store`],
//! [`pipeline`] wires the stages and [`server`] carries the HTTP routes.
//! [`schedule`] is a second way in: cron runs instead of bus events.
//! See ARCHITECTURE.md.

#![warn(missing_docs, unreachable_pub)]

pub mod cli;
pub mod clock;
pub mod config;
pub mod delivery;
pub mod event;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod incoming;
pub mod metrics;
pub mod observer;
pub mod payload;
pub mod pipeline;
pub mod plugin;
pub mod schedule;
pub mod server;
pub mod signing;
pub mod source;
pub mod store;
pub mod tls;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{error, info};

use config::{Config, SourceConfig};
use delivery::dispatcher::Dispatcher;
use delivery::Sender;
use pipeline::Pipeline;
use store::Store;

/// Why `run` stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The database could not be opened or written.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// The HTTP client could not be built.
    #[error(transparent)]
    Client(#[from] delivery::ClientError),
    /// A NATS connection could not be set up.
    #[error(transparent)]
    Nats(#[from] source::nats::NatsError),
    /// The plugins could not be loaded, or the config names one that is
    /// missing or has the wrong role.
    #[error(transparent)]
    Plugins(#[from] plugin::PluginError),
    /// The config does not fit the loaded plugins.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// The listener failed.
    #[error("HTTP server: {0}")]
    Serve(#[from] std::io::Error),
}

/// Loads the plugins folder and checks the config's references against it.
/// Broken files are logged; they only stop start-up if the config uses them.
pub fn load_plugins(
    config: &Config,
    metrics: metrics::Metrics,
) -> Result<plugin::Plugins, RunError> {
    load_plugins_cached(config, Some(config.plugins.cache_dir.clone()), metrics)
}

/// [`load_plugins`] with compiled plugins cached in `cache_dir` rather
/// than the config's (`None`: compiled afresh, nothing written).
pub fn load_plugins_cached(
    config: &Config,
    cache_dir: Option<std::path::PathBuf>,
    metrics: metrics::Metrics,
) -> Result<plugin::Plugins, RunError> {
    let (plugins, changes) =
        plugin::Plugins::load_with_metrics(&config.plugins.dir, cache_dir, metrics)?;
    for change in changes {
        if let plugin::Change::Failed(name, e) = change {
            tracing::warn!(plugin = %name, error = %e, "plugin not loaded");
        }
    }
    config.check_plugins(&plugins)?;
    Ok(plugins)
}

/// Runs wasmhook on an already-bound listener until `shutdown` completes.
/// Tests call this in-process with a listener on port 0.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let store = Store::open(&config.storage).await?;
    let metrics = metrics::Metrics::new(&config.metrics_namespace);
    let switches = delivery::switches::Switches::open(&store).await?;
    let plugins = load_plugins(&config, metrics.clone())?;
    let sender = Sender::new(&config.http, config.signer.clone())?;
    let observers: Arc<[observer::Observer]> = config.observers.clone().into();
    let (dispatcher, schedule) = Dispatcher::new(delivery::dispatcher::Parts {
        store: store.clone(),
        sender,
        observers: observers.clone(),
        plugins: plugins.clone(),
        default_retry: config.retry.clone(),
        max_concurrent: config.http.max_concurrent,
        controls: config.controls.clone(),
        metrics: metrics.clone(),
        switches: switches.clone(),
    });
    // Read before any source starts, so nothing new is queued twice.
    let resumed = store.pending().await?;
    let adopter = schedule.clone();
    let pipeline = Pipeline::new(
        observers,
        plugins.clone(),
        store.clone(),
        schedule,
        metrics.clone(),
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let watching = config
        .plugins
        .watch
        .then(|| plugins.watch(config.plugins.watch_interval, stop_rx.clone()));
    let dispatching =
        tokio::spawn(dispatcher.run(resumed, stop_rx.clone(), config.server.shutdown_timeout));
    let (leases_done, leases_stop) = watch::channel(false);
    let leasing = store.lease().map(|lease| {
        tokio::spawn(keep_leases(
            store.clone(),
            lease,
            adopter,
            stop_rx.clone(),
            leases_stop,
        ))
    });
    let scheduling = schedule::spawn(
        config.schedules.clone(),
        pipeline.clone(),
        &store,
        stop_rx.clone(),
    );
    let connected = source::Connected::new(config.source == SourceConfig::Http);
    let source = source::spawn(
        &config.source,
        pipeline.clone(),
        connected.clone(),
        stop_rx.clone(),
    );

    let seen = incoming::replay::Seen::new(store.clone());
    let purging = {
        let (seen, mut stop) = (seen.clone(), stop_rx.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => break,
                    _ = tokio::time::sleep(Duration::from_secs(60)) => {}
                }
                if let Err(e) = seen.purge().await {
                    error!(error = %e, "cannot purge expired incoming delivery ids");
                }
            }
        })
    };
    let retention = {
        let (store, dlq, mut stop) = (store.clone(), config.dlq.clone(), stop_rx.clone());
        let log = config.delivery_log;
        tokio::spawn(async move {
            loop {
                match store.dlq_enforce(dlq.retention, dlq.max_bytes).await {
                    Ok(0) => {}
                    Ok(n) => info!(removed = n, "DLQ retention applied"),
                    Err(e) => error!(error = %e, "cannot apply DLQ retention"),
                }
                if log.enabled {
                    match store.log_enforce(log.retention).await {
                        Ok(0) => {}
                        Ok(n) => info!(removed = n, "delivery log retention applied"),
                        Err(e) => error!(error = %e, "cannot apply the delivery log's retention"),
                    }
                }
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => break,
                    _ = tokio::time::sleep(Duration::from_secs(60)) => {}
                }
            }
        })
    };
    let nats = if config.receivers.iter().any(|r| r.publish_subject.is_some()) {
        let client = source::nats::connect(&config.nats_url, &config.nats_auth, None).await?;
        Some(client)
    } else {
        None
    };
    let state = server::AppState {
        nats,
        pipeline,
        metrics,
        connected,
        switches,
        admin_token: config.server.admin_token.clone(),
        ingest_tokens: config.server.ingest_tokens.clone().into(),
        seen,
    };
    let router = server::router(
        state,
        config.source == SourceConfig::Http,
        config.server.max_body_bytes,
        &config.receivers,
    );
    info!(listen = %listener.local_addr()?, observers = config.observers.len(), "wasmhook running");
    let mut stop = stop_rx.clone();
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await?;

    if let Some(source) = source {
        if let Err(e) = source.await {
            error!(error = %e, "source task failed");
        }
    }
    if let Some(scheduling) = scheduling {
        let _ = scheduling.await;
    }
    let _ = purging.await;
    let _ = retention.await;
    if let Some(watching) = watching {
        let _ = watching.await;
    }
    match dispatching.await {
        Ok(result) => result?,
        Err(e) => error!(error = %e, "dispatcher task failed"),
    }
    // Leases are kept until the last attempt is over, then given up, so
    // that another node takes what is left at once.
    let _ = leases_done.send(true);
    if let Some(leasing) = leasing {
        let _ = leasing.await;
    }
    if let Err(e) = store.close().await {
        // The leases run out by themselves; the others wait that long.
        error!(error = %e, "cannot give up this node's outbox leases");
    }
    store.flush().await?;
    info!("wasmhook stopped");
    Ok(())
}

/// Rows adopted per statement; the rest wait for the next round.
const ADOPT_BATCH: usize = 1_000;

/// With a shared storage (PostgreSQL): renews this node's leases three
/// times per lease, and adopts the rows of nodes that stopped renewing
/// theirs, putting them on this node's dispatcher. Adopts nothing once
/// `stop` turns (the dispatcher takes no more), and ends when `done` does.
async fn keep_leases(
    store: Store,
    lease: Duration,
    schedule: delivery::schedule::Schedule,
    stop: watch::Receiver<bool>,
    mut done: watch::Receiver<bool>,
) {
    let every = (lease / 3).max(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = done.wait_for(|d| *d) => break,
            _ = tokio::time::sleep(every) => {}
        }
        if let Err(e) = store.renew_leases().await {
            error!(error = %e, "cannot renew this node's outbox leases");
        }
        if *stop.borrow() {
            continue;
        }
        loop {
            match store.adopt(ADOPT_BATCH).await {
                Ok(adopted) => {
                    let more = adopted.len() == ADOPT_BATCH;
                    if !adopted.is_empty() {
                        info!(
                            deliveries = adopted.len(),
                            "adopted deliveries whose lease ran out"
                        );
                    }
                    for (due_ms, key) in adopted {
                        schedule.at(due_ms, key);
                    }
                    if !more {
                        break;
                    }
                }
                Err(e) => {
                    error!(error = %e, "cannot adopt deliveries whose lease ran out");
                    break;
                }
            }
        }
    }
}
