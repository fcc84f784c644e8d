//! The thin full-duplex driver: pumps bytes between a transport and the sans-IO association,
//! fires its timers, and hands its events to whoever waits for them. No protocol rule lives
//! here.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tracing::{debug, info};

use dimsum_dimse::association::{Ending, Event};

use super::{Establishment, IncomingRequest, Inner, Response, Shared, ending_error, now};

/// Delivered bytes not yet taken by their consumers beyond which the driver stops reading (the
/// peer is then held back by TCP flow control, not by our memory).
pub(super) const READ_PAUSE_BACKLOG: usize = 4 * 1024 * 1024;
/// What a response or request costs in that count (its command), so that a flood of small
/// messages is bounded too.
pub(super) const MESSAGE_WEIGHT: usize = 512;
/// At most this many slices go into one vectored write.
const MAX_IO_SLICES: usize = 64;
/// How long the final flush and close may take once the association is over.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// A byte stream an association runs over: TCP, or TLS over TCP.
pub trait Transport: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Transport for T {}

/// Runs the association until its transport is closed.
pub(super) async fn run<T: Transport>(transport: T, shared: Arc<Shared>) {
    let (mut reader, mut writer) = tokio::io::split(transport);
    let mut read_buf = BytesMut::with_capacity(64 * 1024);
    let mut out: VecDeque<Bytes> = VecDeque::new();
    let mut needs_flush = false;
    let mut read_closed = false;
    loop {
        let (deadline, closed, read_size) = {
            let mut inner = shared.lock();
            while let Some(bytes) = inner.core.poll_transmit() {
                out.push_back(bytes);
            }
            while let Some(event) = inner.core.poll_event() {
                route(&mut inner, &shared, event);
            }
            if inner.core.abandons_unwritten() {
                out.clear();
            }
            (
                inner.core.poll_timeout(),
                inner.core.is_closed(),
                inner.core.read_size(&read_buf),
            )
        };
        if closed {
            finish(&mut writer, &mut out, &shared).await;
            return;
        }
        let reading = !read_closed && shared.backlog.load(Ordering::Acquire) < READ_PAUSE_BACKLOG;
        let sleep = deadline.map(|at| tokio::time::sleep_until(at.into()));
        tokio::select! {
            result = read_some(&mut reader, &mut read_buf, read_size), if reading => {
                let mut inner = shared.lock();
                match result {
                    Ok(0) => {
                        read_closed = true;
                        inner.core.handle_transport_closed(now());
                    }
                    Err(error) => {
                        read_closed = true;
                        inner.transport_error = transport_failure(&error);
                        inner.core.handle_transport_closed(now());
                    }
                    Ok(_) => inner.core.handle_input(&mut read_buf, now()),
                }
            }
            result = write_some(&mut writer, &mut out, &mut needs_flush), if !out.is_empty() || needs_flush => {
                let mut inner = shared.lock();
                match result {
                    Ok(written) => inner.core.handle_transmitted(written, now()),
                    Err(error) => {
                        debug!(%error, "write failed");
                        out.clear();
                        inner.transport_error = transport_failure(&error);
                        inner.core.handle_transport_closed(now());
                    }
                }
                drop(inner);
                shared.progress.notify_waiters();
            }
            _ = shared.wake.notified() => {}
            _ = async { if let Some(sleep) = sleep { sleep.await } }, if deadline.is_some() => {
                shared.lock().core.handle_timeout(now());
            }
        }
    }
}

/// Reads at most `size` bytes onto the end of `buffer`.
async fn read_some<R: AsyncRead + Unpin>(
    reader: &mut ReadHalf<R>,
    buffer: &mut BytesMut,
    size: usize,
) -> std::io::Result<usize> {
    buffer.reserve(size);
    reader.read_buf(&mut buffer.limit(size)).await
}

/// One vectored write of what is queued (then a flush once the queue is empty, for TLS);
/// returns the bytes written.
async fn write_some<W: AsyncWrite + Unpin>(
    writer: &mut WriteHalf<W>,
    out: &mut VecDeque<Bytes>,
    needs_flush: &mut bool,
) -> std::io::Result<usize> {
    if out.is_empty() {
        writer.flush().await?;
        *needs_flush = false;
        return Ok(0);
    }
    let slices: Vec<IoSlice<'_>> = out
        .iter()
        .take(MAX_IO_SLICES)
        .map(|bytes| IoSlice::new(bytes))
        .collect();
    let written = writer.write_vectored(&slices).await?;
    if written == 0 {
        return Err(std::io::ErrorKind::WriteZero.into());
    }
    let mut left = written;
    while left > 0 {
        let Some(front) = out.front_mut() else { break };
        if front.len() <= left {
            left -= front.len();
            out.pop_front();
        } else {
            front.advance(left);
            left = 0;
        }
    }
    *needs_flush = true;
    Ok(written)
}

/// The association is over: writes what is left (briefly) and closes the transport.
async fn finish<W: AsyncWrite + Unpin>(
    writer: &mut WriteHalf<W>,
    out: &mut VecDeque<Bytes>,
    shared: &Arc<Shared>,
) {
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        let mut needs_flush = true;
        while !out.is_empty() || needs_flush {
            if write_some(writer, out, &mut needs_flush).await.is_err() {
                break;
            }
        }
        let _ = writer.shutdown().await;
    })
    .await;
    let mut inner = shared.lock();
    while let Some(event) = inner.core.poll_event() {
        route(&mut inner, shared, event);
    }
    if inner.ending.is_none() {
        inner.ending = Some(Ending::ConnectionClosed);
    }
    close_routes(&mut inner, shared);
    drop(inner);
    shared.progress.notify_waiters();
}

/// What to tell people about an I/O error that ended the transport; `None` for a peer that
/// merely went away (reset, or closed without a TLS close_notify).
fn transport_failure(error: &std::io::Error) -> Option<String> {
    use std::io::ErrorKind::*;
    match crate::tls::explain(error) {
        Some(hint) => Some(format!("{error} ({hint})")),
        None if matches!(
            error.kind(),
            ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof
        ) =>
        {
            None
        }
        None => Some(error.to_string()),
    }
}

/// Hands one event of the association to whoever waits for it.
fn route(inner: &mut Inner, shared: &Arc<Shared>, event: Event) {
    match event {
        Event::AssociationRequested(rq) => inner.routes.establish(Establishment::Requested(rq)),
        Event::Established => inner.routes.establish(Establishment::Established),
        Event::Request {
            presentation_context_id,
            message,
            command_set,
        } => {
            let (data_set, sender) = inner
                .routes
                .data_set_channel(message.has_data_set(), shared);
            let message_id = message.message_id().unwrap_or_default();
            let cancelled = tokio_util::sync::CancellationToken::new();
            inner
                .routes
                .cancellation
                .insert(message_id, cancelled.clone());
            inner.routes.inbound = sender;
            let request = IncomingRequest {
                presentation_context_id,
                message,
                command_set,
                data_set,
                cancelled,
            };
            if let Some(requests) = &inner.routes.requests {
                let _ = requests.send(request);
            }
        }
        Event::Response {
            presentation_context_id,
            message,
            command_set,
            is_final,
        } => {
            let message_id = message.message_id_being_responded_to().unwrap_or_default();
            let (data_set, sender) = inner
                .routes
                .data_set_channel(message.has_data_set(), shared);
            inner.routes.inbound = sender;
            let response = Response {
                presentation_context_id,
                message,
                command_set,
                data_set,
                is_final,
            };
            let delivered = inner
                .routes
                .responses
                .get(&message_id)
                .is_some_and(|route| route.send(Ok(response)).is_ok());
            if delivered {
                shared.backlog.fetch_add(MESSAGE_WEIGHT, Ordering::AcqRel);
            }
            if is_final {
                inner.routes.responses.remove(&message_id);
                shared.progress.notify_waiters();
            }
        }
        Event::Data { data, is_last, .. } => {
            let length = data.len();
            if let Some(sender) = &inner.routes.inbound
                && sender.send(Ok(data)).is_ok()
            {
                shared.backlog.fetch_add(length, Ordering::AcqRel);
            }
            if is_last {
                inner.routes.inbound = None;
            }
        }
        Event::CancelRequested { message_id } => {
            if let Some(token) = inner.routes.cancellation.get(&message_id) {
                token.cancel();
            }
        }
        Event::Refused {
            message_id,
            command_field,
            status,
            reason,
        } => info!("Refused {command_field} (MsgID {message_id}) with {status}: {reason}"),
        Event::ReleaseRequested => debug!("the peer asks to release"),
        Event::Ended(ending) => {
            inner.ending = Some(ending);
            close_routes(inner, shared);
            shared.progress.notify_waiters();
        }
    }
}

/// Tells everyone still waiting on the association how it ended.
fn close_routes(inner: &mut Inner, shared: &Shared) {
    let Some(ending) = inner.ending.clone() else {
        return;
    };
    let transport_error = inner.transport_error.clone();
    let error = || ending_error(&ending, transport_error.as_deref(), &shared.timeouts);
    inner.routes.establish(Establishment::Ended(ending.clone()));
    for (_, route) in inner.routes.responses.drain() {
        let _ = route.send(Err(error()));
    }
    if let Some(inbound) = inner.routes.inbound.take() {
        let _ = inbound.send(Err(error()));
    }
    for (_, token) in inner.routes.cancellation.drain() {
        token.cancel();
    }
    inner.routes.requests = None;
}
