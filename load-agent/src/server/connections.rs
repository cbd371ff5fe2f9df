//! Serving connections: the accept loop and the limits that keep slow or idle clients from starving the agent.
//!
//! - A request's head must arrive within `header_read_timeout` of the connection opening, or of its first byte
//!   after a keep-alive pause: a client trickling its headers is cut off. (hyper's own header timeout is not used:
//!   it also runs while a keep-alive connection waits, which would make the idle timeout as short.)
//! - A request's body must then arrive within `header_read_timeout` as well (a trickled body would hold a request
//!   open for ever): reading it fails, the request is answered 400 and the connection closed.
//! - A keep-alive connection without a request for `idle_timeout` (nor bytes of a response still going out) is
//!   closed.
//! - At most `max_connections` are open at once. When one more arrives at the cap, the connection that has been
//!   quiet the longest without a request being handled is closed to make room: idle or trickling sockets cannot
//!   lock out a monitor's `/v1/health` or orch's next poll, and a request being handled is never cut. If every
//!   connection is handling a request, the newcomer gets a 503. The default cap is derived from the open-file
//!   limit so that accepting never runs out of descriptors (which would leave new connections waiting unseen in
//!   the backlog): a quarter of what remains after a reserve for the process itself, the rest left for runs'
//!   files and their outgoing load connections. Should accepting run out anyway, the oldest quiet connection is
//!   closed as well.
//! - Shutdown: stop accepting, let each connection finish the request it is handling (quiet ones close at once),
//!   for at most [`SHUTDOWN_GRACE`].

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tower::ServiceExt;

/// Files kept for the process itself (standard streams, the runtime, the listener, logs, a run's files) before
/// the open-file limit is shared out.
const RESERVED_FILES: u64 = 32;
const MIN_CONNECTIONS: usize = 4;
const MAX_DEFAULT_CONNECTIONS: usize = 1024;
/// How long shutdown waits for requests being handled.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How long clients may take, and how many may be connected.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConnectionLimits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> ConnectionLimits {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: default_max_connections(),
        }
    }
}

/// The connection cap for this process's open-file limit (its soft RLIMIT_NOFILE).
pub fn default_max_connections() -> usize {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit only writes the struct it is given.
    let known = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    let files = if known && limit.rlim_cur != libc::RLIM_INFINITY { limit.rlim_cur } else { 1024 };
    connections_for_file_limit(files)
}

/// A quarter of the files left after the reserve, within [`MIN_CONNECTIONS`]..=[`MAX_DEFAULT_CONNECTIONS`].
pub fn connections_for_file_limit(files: u64) -> usize {
    let share = files.saturating_sub(RESERVED_FILES) / 4;
    usize::try_from(share).unwrap_or(usize::MAX).clamp(MIN_CONNECTIONS, MAX_DEFAULT_CONNECTIONS)
}

/// Where a connection stands.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// Waiting for (the rest of) a request head, since the connection opened or the head's first byte.
    AwaitingHead { since: Instant },
    /// A request is being handled.
    Handling,
    /// Between requests (keep-alive).
    Idle,
}

#[derive(Debug)]
struct Activity {
    phase: Phase,
    /// The last time bytes went either way (or a request ended).
    last: Instant,
}

/// One open connection, as the accept loop and its own task see it.
struct Tracked {
    activity: Mutex<Activity>,
    /// Asks the connection's task to close it (to make room).
    close: Notify,
}

impl Tracked {
    fn new() -> Tracked {
        let now = Instant::now();
        Tracked {
            activity: Mutex::new(Activity { phase: Phase::AwaitingHead { since: now }, last: now }),
            close: Notify::new(),
        }
    }

    fn activity(&self) -> MutexGuard<'_, Activity> {
        self.activity.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn on_read(&self) {
        let now = Instant::now();
        let mut activity = self.activity();
        if activity.phase == Phase::Idle {
            activity.phase = Phase::AwaitingHead { since: now };
        }
        activity.last = now;
    }

    fn on_write(&self) {
        self.activity().last = Instant::now();
    }

    fn begin_request(self: &Arc<Tracked>) -> RequestGuard {
        self.activity().phase = Phase::Handling;
        RequestGuard(Arc::clone(self))
    }

    /// When to look again, and the limit that has passed if one has.
    fn check(&self, limits: &ConnectionLimits, now: Instant) -> Result<Instant, &'static str> {
        let activity = self.activity();
        let (deadline, reason) = match activity.phase {
            Phase::AwaitingHead { since } => (since + limits.header_read_timeout, "header read timeout"),
            Phase::Idle => (activity.last + limits.idle_timeout, "idle timeout"),
            Phase::Handling => return Ok(now + limits.idle_timeout),
        };
        if now >= deadline { Err(reason) } else { Ok(deadline) }
    }

    /// Since when the connection has been quiet, if it may be closed to make room (no request being handled).
    fn quiet_since(&self) -> Option<Instant> {
        let activity = self.activity();
        (activity.phase != Phase::Handling).then_some(activity.last)
    }
}

/// Marks the end of a request when dropped (also when the request is abandoned).
struct RequestGuard(Arc<Tracked>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let mut activity = self.0.activity();
        activity.phase = Phase::Idle;
        activity.last = Instant::now();
    }
}

/// The open connections.
#[derive(Default)]
struct Table {
    next_id: u64,
    open: HashMap<u64, Arc<Tracked>>,
}

type SharedTable = Arc<Mutex<Table>>;

fn lock(table: &SharedTable) -> MutexGuard<'_, Table> {
    table.lock().unwrap_or_else(|e| e.into_inner())
}

/// Closes the connection quiet the longest; false when every one is handling a request.
fn close_quietest(table: &mut Table) -> bool {
    let victim = table.open.iter().filter_map(|(id, tracked)| Some((tracked.quiet_since()?, *id))).min();
    let Some((_, id)) = victim else { return false };
    if let Some(tracked) = table.open.remove(&id) {
        // A stored permit: the task sees it even if it is not waiting yet.
        tracked.close.notify_one();
    }
    true
}

/// Registers a new connection, closing the quietest one at the cap; `None` when there is no room.
fn admit(table: &SharedTable, cap: usize) -> Option<(u64, Arc<Tracked>)> {
    let mut table = lock(table);
    if table.open.len() >= cap && !close_quietest(&mut table) {
        return None;
    }
    let id = table.next_id;
    table.next_id += 1;
    let tracked = Arc::new(Tracked::new());
    table.open.insert(id, Arc::clone(&tracked));
    Some((id, tracked))
}

/// Takes the connection off the table when its task ends.
struct Registration {
    table: SharedTable,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        lock(&self.table).open.remove(&self.id);
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets the requests being handled finish.
pub async fn serve_connections(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let table = SharedTable::default();
    // Every connection task holds a receiver: `closed()` on the sender then says when all have ended.
    let (shutdown_sender, shutdown_receiver) = watch::channel(());
    let mut last_exhaustion_warning: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _peer)) => match admit(&table, limits.max_connections) {
                Some((id, tracked)) => {
                    let registration = Registration { table: Arc::clone(&table), id };
                    let task = serve_connection(stream, router.clone(), tracked, limits, shutdown_receiver.clone());
                    tokio::spawn(async move {
                        task.await;
                        drop(registration);
                    });
                }
                None => refuse_busy(stream),
            },
            Err(error) if is_out_of_files(&error) => {
                if last_exhaustion_warning.is_none_or(|at| at.elapsed() > Duration::from_secs(5)) {
                    tracing::warn!(%error, "out of file descriptors: closing the quietest connection");
                    last_exhaustion_warning = Some(Instant::now());
                }
                close_quietest(&mut lock(&table));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            // A connection that broke before it was accepted: nothing to do.
            Err(error) => tracing::debug!(%error, "accept"),
        }
    }
    drop(listener);
    drop(shutdown_receiver);
    let _ = shutdown_sender.send(());
    if tokio::time::timeout(SHUTDOWN_GRACE, shutdown_sender.closed()).await.is_err() {
        tracing::warn!("some connections were still busy after {SHUTDOWN_GRACE:?}: closing them");
    }
}

fn is_out_of_files(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM))
}

/// Answers 503 on a connection there is no room for, without waiting for its request.
fn refuse_busy(stream: TcpStream) {
    const BODY: &str =
        r#"{"error":"the agent is handling as many connections as it may (--max-connections); retry shortly"}"#;
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\nretry-after: 1\r\n\r\n{BODY}",
        BODY.len()
    );
    // A fresh socket's send buffer takes this at once; if not, closing is answer enough.
    let _ = stream.try_write(response.as_bytes());
}

/// Serves one connection until it ends, breaks a limit, is closed to make room, or shutdown finishes its request.
async fn serve_connection(
    stream: TcpStream,
    router: Router,
    tracked: Arc<Tracked>,
    limits: ConnectionLimits,
    mut shutdown: watch::Receiver<()>,
) {
    let io = TokioIo::new(TrackedIo { inner: stream, tracked: Arc::clone(&tracked) });
    let requests = Arc::clone(&tracked);
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let guard = requests.begin_request();
        let router = router.clone();
        async move {
            let request =
                request.map(|body| axum::body::Body::new(DeadlineBody::new(body, limits.header_read_timeout)));
            let response = router.oneshot(request).await;
            drop(guard);
            response
        }
    });
    let mut builder = http1::Builder::new();
    // The watchdog below times heads and pauses (see the module's notes).
    builder.header_read_timeout(None);
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    let mut draining = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "connection ended");
                }
                return;
            }
            _ = shutdown.changed(), if !draining => {
                draining = true;
                connection.as_mut().graceful_shutdown();
            }
            () = tracked.close.notified() => {
                tracing::debug!("connection closed to make room for a new one");
                return;
            }
            reason = limit_passed(&tracked, &limits) => {
                tracing::debug!(reason, "connection closed");
                return;
            }
        }
    }
}

/// Resolves when the connection breaks one of its time limits.
async fn limit_passed(tracked: &Tracked, limits: &ConnectionLimits) -> &'static str {
    loop {
        match tracked.check(limits, Instant::now()) {
            Ok(next_look) => tokio::time::sleep_until(next_look).await,
            Err(reason) => return reason,
        }
    }
}

/// A request body that fails once `limit` has passed before its end arrived.
struct DeadlineBody {
    inner: Incoming,
    deadline: Pin<Box<tokio::time::Sleep>>,
    limit: Duration,
}

impl DeadlineBody {
    fn new(inner: Incoming, limit: Duration) -> DeadlineBody {
        DeadlineBody { inner, deadline: Box::pin(tokio::time::sleep(limit)), limit }
    }
}

impl Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|result| result.map_err(Into::into)));
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            let message = format!("the request body did not arrive within {:?} (--header-read-timeout)", this.limit);
            return Poll::Ready(Some(Err(message.into())));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A stream that notes when bytes move, for the time limits and the choice of which connection to close.
struct TrackedIo {
    inner: TcpStream,
    tracked: Arc<Tracked>,
}

impl AsyncRead for TrackedIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.tracked.on_read();
        }
        result
    }
}

impl AsyncWrite for TrackedIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write(cx, data);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            this.tracked.on_write();
        }
        result
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write_vectored(cx, data);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            this.tracked.on_write();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_follows_the_file_limit() {
        assert_eq!(connections_for_file_limit(64), 8);
        assert_eq!(connections_for_file_limit(1024), 248);
        assert_eq!(connections_for_file_limit(10), MIN_CONNECTIONS);
        assert_eq!(connections_for_file_limit(1 << 20), MAX_DEFAULT_CONNECTIONS);
        assert!(default_max_connections() >= MIN_CONNECTIONS);
    }

    #[test]
    fn limits_depend_on_the_phase() {
        let limits = ConnectionLimits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 4,
        };
        let tracked = Arc::new(Tracked::new());
        let Phase::AwaitingHead { since: start } = tracked.activity().phase else { panic!("a new connection awaits") };
        assert_eq!(tracked.check(&limits, start), Ok(start + Duration::from_secs(10)));
        assert_eq!(tracked.check(&limits, start + Duration::from_secs(10)), Err("header read timeout"));
        let guard = tracked.begin_request();
        assert!(tracked.check(&limits, start + Duration::from_secs(3600)).is_ok(), "a request is never timed out");
        assert_eq!(tracked.quiet_since(), None);
        drop(guard);
        let ended = tracked.activity().last;
        assert_eq!(tracked.check(&limits, ended + Duration::from_secs(30)), Ok(ended + Duration::from_secs(60)));
        assert_eq!(tracked.check(&limits, ended + Duration::from_secs(60)), Err("idle timeout"));
        tracked.on_write();
        assert_eq!(tracked.activity().phase, Phase::Idle, "a response still going out");
        tracked.on_read();
        let Phase::AwaitingHead { since } = tracked.activity().phase else { panic!("a new head starts its clock") };
        assert_eq!(tracked.check(&limits, since), Ok(since + Duration::from_secs(10)));
    }

    #[tokio::test]
    async fn the_quietest_connection_makes_room_and_busy_ones_stay() {
        let table = SharedTable::default();
        let (first, first_tracked) = admit(&table, 2).unwrap();
        let (second, second_tracked) = admit(&table, 2).unwrap();
        let _busy = second_tracked.begin_request();
        let (third, _) = admit(&table, 2).expect("the first connection makes room");
        let open: Vec<u64> = lock(&table).open.keys().copied().collect();
        assert!(!open.contains(&first) && open.contains(&second) && open.contains(&third), "{open:?}");
        // The first connection's task is told to close.
        tokio::time::timeout(Duration::from_secs(1), first_tracked.close.notified()).await.unwrap();
        let _also_busy = lock(&table).open[&third].begin_request();
        assert!(admit(&table, 2).is_none(), "every connection handles a request: no room");
    }
}
