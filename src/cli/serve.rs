//! `profusion serve FILE.sql --listen 127.0.0.1:8080`: runs the pipeline and serves its
//! views, scores, webhook ingest and metrics over HTTP until Ctrl-C.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use tokio::sync::Notify;

use crate::Pipeline;
use crate::connector::store::ServingReads;
use crate::error::{Error, Result};
use crate::pipeline::group::GroupRun;
use crate::pipeline::{StatusLine, status_text};
use crate::serve::{
    HttpLimits, Scope, ServeOptions, ServeState, Tokens, generate_token, router,
    serve_on_own_thread, tls_acceptor,
};

use super::{CheckpointArgs, GroupArgs, PipelineFile, SessionArgs, stop_on_ctrl_c};

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    file: PipelineFile,
    #[command(flatten)]
    session: SessionArgs,
    /// The address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// A file of bearer tokens, one `read|ingest|admin TOKEN` per line. Tokens are also
    /// read from PROFUSION_READ_TOKENS, PROFUSION_INGEST_TOKENS and PROFUSION_ADMIN_TOKENS.
    #[arg(long, value_name = "FILE")]
    tokens: Option<PathBuf>,
    /// Serve HTTPS with this certificate chain (PEM, the server's certificate first).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve without authentication (only on a loopback address).
    #[arg(long, conflicts_with = "tokens")]
    no_auth: bool,
    /// The longest a client may take to send a request's head, from its connection's
    /// opening or the first byte of a next request.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = crate::sql::parse_duration)]
    header_timeout: Duration,
    /// The longest a connection may wait, idle, for its next request.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = crate::sql::parse_duration)]
    idle_timeout: Duration,
    /// The longest from a request's head to its answer, its body read included (408).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = crate::sql::parse_duration)]
    request_timeout: Duration,
    /// Connections open at once; at the cap a new connection takes the place of one that
    /// has not finished a request yet, or of the one idle longest. Lowered to fit the
    /// process's open-files limit.
    #[arg(long, value_name = "N", default_value_t = HttpLimits::default().max_connections)]
    max_connections: usize,
    /// Connections per view for lookups that miss the cache, apart from the pipeline's.
    #[arg(long, value_name = "N", default_value_t = 4)]
    read_connections: usize,
    /// The longest a lookup may wait for its view's store (a connection, then the read).
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = crate::sql::parse_duration)]
    read_timeout: Duration,
    /// Store reads of one view in flight at most; a lookup beyond them gets 503 at once.
    #[arg(long, value_name = "N", default_value_t = 64)]
    read_concurrency: usize,
    /// Idempotency keys remembered (within 24 hours); the oldest are forgotten first.
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    idempotency_keys: usize,
    /// Profile rows kept in memory per view (0: every request reads the store).
    #[arg(long, default_value_t = 100_000)]
    cache_entries: usize,
    #[command(flatten)]
    checkpoints: CheckpointArgs,
    /// Never show the live status line.
    #[arg(long)]
    quiet: bool,
    #[command(flatten)]
    group: GroupArgs,
}

/// What `serve` runs: the pipeline, or this process's share of a group's.
enum Runner {
    Alone(Pipeline),
    Group(Box<GroupRun>),
}

pub async fn serve(args: ServeArgs) -> Result<()> {
    let tokens = tokens(&args)?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(tls_acceptor(cert, key)?),
        _ => None,
    };
    let text = args.file.read()?;
    let checkpoints = args.checkpoints.options();
    let runner = match args.group.options(checkpoints.clone()) {
        None => Runner::Alone(Pipeline::load(&text, &args.session.options()).await?),
        Some(options) => Runner::Group(Box::new(
            GroupRun::load(&text, &args.session.options(), options).await?,
        )),
    };
    let engine = match &runner {
        Runner::Alone(pipeline) => pipeline.engine().clone(),
        Runner::Group(group) => group.engine().clone(),
    };
    let shared = Arc::clone(engine.shared());
    let state = ServeState::new(
        engine,
        ServeOptions {
            tokens,
            cache_entries: match runner {
                Runner::Alone(_) => args.cache_entries,
                Runner::Group(_) => 0,
            },
            pipeline_runtime: tokio::runtime::Handle::current(),
            request_timeout: args.request_timeout,
            reads: ServingReads {
                connections: args.read_connections.max(1),
                timeout: args.read_timeout,
            },
            read_concurrency: args.read_concurrency,
            idempotency_keys: args.idempotency_keys,
        },
    )?;
    state.check_ingest_targets().await?;
    let limits = HttpLimits {
        header_timeout: args.header_timeout,
        idle_timeout: args.idle_timeout,
        request_timeout: args.request_timeout,
        max_connections: connection_cap(args.max_connections),
    };
    let listener = std::net::TcpListener::bind(args.listen)
        .and_then(|listener| listener.set_nonblocking(true).map(|()| listener))
        .map_err(|source| Error::Io {
            context: format!("listening on {}", args.listen),
            source,
        })?;
    let address = listener.local_addr().map_err(|source| Error::Io {
        context: "the listening address".into(),
        source,
    })?;
    eprintln!(
        "serving {} on {}://{address} (views: {})",
        args.file.display(),
        if tls.is_some() { "https" } else { "http" },
        state.view_names().join(", ")
    );

    // Stops the server: Ctrl-C, or a pipeline that failed.
    let shutdown = Arc::new(Notify::new());
    let on_signal = Arc::clone(&shutdown);
    stop_on_ctrl_c(move || on_signal.notify_one());

    let show_status =
        !args.quiet && std::io::stderr().is_terminal() && matches!(runner, Runner::Alone(_));
    let status =
        show_status.then(|| StatusLine::start(Arc::clone(&shared), Duration::from_millis(500)));
    let running = Arc::clone(&state);
    let on_failure = Arc::clone(&shutdown);
    let stop = match &runner {
        Runner::Alone(_) => None,
        Runner::Group(group) => Some(group.stop_signal()),
    };
    let pipeline_task = tokio::spawn(async move {
        running.set_ready(true);
        let ran = match runner {
            Runner::Alone(pipeline) => pipeline.run_with(checkpoints).await,
            Runner::Group(group) => group.run().await,
        };
        match &ran {
            Ok(summary) if !summary.stopped => {
                eprintln!("\npipeline finished; still serving what it wrote (Ctrl-C stops)")
            }
            Ok(_) => {}
            Err(error) => {
                eprintln!("\npipeline failed: {error}");
                running.set_ready(false);
                on_failure.notify_one();
            }
        }
        ran
    });

    let served = serve_on_own_thread(
        listener,
        router(Arc::clone(&state)),
        limits,
        tls,
        Arc::clone(&shutdown),
    )
    .await;
    served.map_err(|source| Error::Io {
        context: format!("serving on {address}"),
        source,
    })?;
    state.set_ready(false);
    shared.stop.stop();
    if let Some(stop) = stop {
        stop.stop();
    }
    let summary = pipeline_task.await.map_err(|e| Error::Io {
        context: "pipeline task".into(),
        source: std::io::Error::other(e.to_string()),
    })??;
    drop(status);
    let rate = summary.events_in as f64 / summary.elapsed.as_secs_f64().max(1e-9);
    eprintln!(
        "stopped after {:.2}s: {}",
        summary.elapsed.as_secs_f64(),
        status_text(&shared, rate)
    );
    Ok(())
}

/// The tokens to accept: from `--tokens` and the environment; with none, one admin token
/// made now and printed; none needed with `--no-auth`, on loopback only.
fn tokens(args: &ServeArgs) -> Result<Tokens> {
    if args.no_auth {
        if !args.listen.ip().is_loopback() {
            return Err(Error::Io {
                context: "serve --no-auth".into(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!(
                        "--no-auth is allowed only on a loopback address, not {}",
                        args.listen
                    ),
                ),
            });
        }
        eprintln!("warning: serving without authentication (--no-auth)");
        return Ok(Tokens::open());
    }
    let mut tokens = match &args.tokens {
        Some(path) => Tokens::from_file(path)?,
        None => Vec::new(),
    };
    tokens.extend(Tokens::from_env(|name| std::env::var(name).ok()));
    if tokens.is_empty() {
        let token = generate_token()?;
        eprintln!(
            "no tokens configured: this run's admin token is\n  {token}\n(--tokens FILE or PROFUSION_ADMIN_TOKENS choose your own)"
        );
        tokens.push((Scope::Admin, token));
    }
    Tokens::new(tokens)
}

/// Descriptors kept for the pipeline (files, stores, brokers) beside the connections.
const RESERVED_DESCRIPTORS: u64 = 256;

/// `wanted` connections, or fewer when the process may not open that many files: the
/// soft open-files limit is raised to the hard one first, as servers do.
fn connection_cap(wanted: usize) -> usize {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            limit = raised;
        }
    }
    let Some(files) = limit.current else {
        return wanted;
    };
    let fits = files.saturating_sub(RESERVED_DESCRIPTORS).max(16) as usize;
    if wanted > fits {
        eprintln!(
            "warning: --max-connections {wanted} does not fit the open-files limit ({files}, ulimit -n); serving at most {fits} connections"
        );
        return fits;
    }
    wanted
}
