//! `placewise serve`: the dashboard over the database's results, on an HTTP server that
//! stops cleanly on Ctrl-C.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::cli::{Cli, ServeArgs};
use crate::dashboard::{self, Dashboard, DashboardError};
use crate::interrupt;

/// How often the server checks whether Ctrl-C (or SIGTERM, SIGHUP) has arrived.
const INTERRUPT_POLL: Duration = Duration::from_millis(100);

pub fn run(cli: &Cli, args: &ServeArgs) -> Result<()> {
    interrupt::set_stop_message(
        "interrupted: finishing the requests in progress (press Ctrl-C again to exit now)",
    );
    let mut dashboard = Dashboard::open(&cli.db)?;
    let listener = bind(args.addr)?;
    let address = listener
        .local_addr()
        .context("cannot read the bound address")?;
    // `to_canonical` counts an IPv4-mapped loopback address (`[::ffff:127.0.0.1]`) too.
    if !address.ip().to_canonical().is_loopback() {
        tracing::warn!(
            %address,
            "the dashboard listens beyond this machine and has no authentication"
        );
        dashboard.accept_any_host();
    }
    let dashboard = Arc::new(dashboard);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_io()
        .enable_time()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(listener, dashboard, address))
}

/// Binds `address`, naming an address in use as such.
fn bind(address: std::net::SocketAddr) -> Result<std::net::TcpListener, DashboardError> {
    let listener = std::net::TcpListener::bind(address).map_err(|source| {
        if source.kind() == std::io::ErrorKind::AddrInUse {
            DashboardError::AddressInUse { address }
        } else {
            DashboardError::Bind { address, source }
        }
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|source| DashboardError::Bind { address, source })?;
    Ok(listener)
}

async fn serve(
    listener: std::net::TcpListener,
    dashboard: Arc<Dashboard>,
    address: std::net::SocketAddr,
) -> Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)
        .map_err(|source| DashboardError::Bind { address, source })?;
    let database = dashboard.path().display().to_string();
    let app = dashboard::router(dashboard);
    // Printed, not only logged, so that a script (or a test) can read the address even
    // when `RUST_LOG` hides info lines.
    eprintln!("placewise dashboard of {database} at http://{address}/ (Ctrl-C stops it)");
    tracing::info!(%address, database, "dashboard started");
    axum::serve(listener, app)
        .with_graceful_shutdown(interrupted())
        .await
        .context("the HTTP server failed")?;
    tracing::info!(%address, "dashboard stopped");
    eprintln!("dashboard stopped");
    Ok(())
}

/// Completes once an interrupt arrives; the server then finishes the requests in progress.
async fn interrupted() {
    while !interrupt::requested() {
        tokio::time::sleep(INTERRUPT_POLL).await;
    }
    tracing::info!("interrupt received; finishing requests in progress");
}
