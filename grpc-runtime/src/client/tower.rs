//! The client side of the `tower` feature: [`Channel`] as a `tower_service::Service` of
//! raw `http::Request`s (answering with a [`ResponseBody`]).
//!
//! A `Channel` used as a service:
//! - sends each request through the channel's name resolution and load balancing: one
//!   pick per request, waiting for a READY subchannel (wait-for-ready) for as long as the
//!   request's `grpc-timeout` header allows (without one, until the channel has one or
//!   shuts down);
//! - sends the request as given (the caller writes the gRPC headers), only completing its
//!   URI with the channel's scheme and `:authority`; the body is streamed with HTTP/2 flow
//!   control (the peer's window bounds what is buffered), and the response body releases
//!   flow-control capacity as it is read;
//! - does not apply the channel's interceptors, call credentials, retry policy or default
//!   compression (those belong to the typed path; with tower, layers do that job);
//! - `poll_ready` is ready at once while the channel is not shut down (an IDLE channel
//!   starts connecting), and fails with UNAVAILABLE after [`Channel::shutdown`]: the
//!   channel queues calls itself until a subchannel is READY, so readiness is not
//!   capacity, as with grpc-go's ClientConn.
//!
//! Errors are [`Status`]es (UNAVAILABLE when no connection could be picked or the
//! connection failed, DEADLINE_EXCEEDED when `grpc-timeout` passed while picking,
//! the RST_STREAM mapping of the gRPC spec for a reset stream).

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame};
use tracing::debug;

use super::call::{response_error, with_deadline, AbortOnDrop, ActiveCall};
use super::channel::Channel;
use super::connectivity::ConnectivityState;
use super::lb::OnDone;
use crate::metadata::MetadataMap;
use crate::status::Status;
use crate::timeout::GRPC_TIMEOUT_NAME;
use crate::timeout::{decode_timeout, Deadline};

/// The error type tower middleware passes around: anything that is an error.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The boxed future of [`Channel`]'s `Service::call`.
pub type ResponseFuture =
    Pin<Box<dyn Future<Output = Result<http::Response<ResponseBody>, Status>> + Send>>;

/// The response body of a request sent with [`Channel`] as a tower service: the data
/// frames as they arrive, then the trailers (`grpc-status` for a gRPC call). Reading it
/// releases HTTP/2 flow-control capacity, so a slow reader slows the server down; dropping
/// it before the end resets the stream with CANCEL.
///
/// ```
/// async fn read(body: grpc_runtime::client::tower::ResponseBody) -> Result<(), grpc_runtime::Status> {
///     use std::future::poll_fn;
///     use std::pin::pin;
///     use http_body::Body;
///     let mut body = pin!(body);
///     while let Some(frame) = poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
///         match frame?.into_data() {
///             Ok(data) => println!("{} bytes", data.len()),
///             Err(trailers) => println!("trailers: {:?}", trailers.trailers_ref()),
///         }
///     }
///     Ok(())
/// }
/// ```
pub struct ResponseBody {
    /// `None` once the trailers (or an error) were returned.
    recv: Option<h2::RecvStream>,
    data_done: bool,
    /// The LB policy's callback for the final status, and the idleness count.
    done: Option<CallEnd>,
    /// The task sending the request body; aborted (the stream reset) when this is dropped.
    _sender: Option<AbortOnDrop>,
}

impl std::fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody")
            .field("ended", &self.recv.is_none())
            .finish()
    }
}

/// The end of one call on the channel: tells the LB policy how it ended (once) and
/// stops counting the call as in flight.
struct CallEnd {
    on_done: Option<OnDone>,
    _active: ActiveCall,
}

impl CallEnd {
    fn finish(mut self, status: &Status) {
        if let Some(f) = self.on_done.take() {
            f(status);
        }
    }
}

impl Drop for CallEnd {
    fn drop(&mut self) {
        if let Some(f) = self.on_done.take() {
            f(&Status::cancelled("response dropped before it ended"));
        }
    }
}

impl ResponseBody {
    fn end(&mut self, status: &Status) {
        self.recv = None;
        if let Some(d) = self.done.take() {
            d.finish(status);
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.get_mut();
        let Some(recv) = this.recv.as_mut() else {
            return Poll::Ready(None);
        };
        if !this.data_done {
            match ready!(recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    if let Err(e) = recv.flow_control().release_capacity(data.len()) {
                        debug!("release_capacity failed: {e}");
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(e)) => {
                    let status = Status::from_h2_error(&e);
                    this.end(&status);
                    return Poll::Ready(Some(Err(status)));
                }
                None => this.data_done = true,
            }
        }
        match ready!(recv.poll_trailers(cx)) {
            Ok(Some(trailers)) => {
                let status = Status::from_header_map(&trailers)
                    .unwrap_or_else(|| Status::unknown("trailers without grpc-status"));
                this.end(&status);
                Poll::Ready(Some(Ok(Frame::trailers(trailers))))
            }
            Ok(None) => {
                this.end(&Status::internal(
                    "server closed the stream without sending trailers",
                ));
                Poll::Ready(None)
            }
            Err(e) => {
                let status = Status::from_h2_error(&e);
                this.end(&status);
                Poll::Ready(Some(Err(status)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_none()
    }
}

/// `Channel` as a tower service of raw HTTP/2 requests; see the [module
/// docs](crate::client::tower) for what it does with them.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// use bytes::Bytes;
/// use tower_service::Service;
///
/// let mut channel = grpc_runtime::Channel::builder("http://127.0.0.1:50051").connect_lazy()?;
/// // An empty grpc.health.v1.HealthCheckRequest, framed: flag 0, length 0.
/// type Body = http_body_util::Full<Bytes>;
/// let body = Body::new(Bytes::from_static(&[0, 0, 0, 0, 0]));
/// let request = http::Request::post("/grpc.health.v1.Health/Check")
///     .header("content-type", "application/grpc")
///     .header("te", "trailers")
///     .body(body)?;
/// // `poll_ready` does not know the body type: name it.
/// std::future::poll_fn(|cx| Service::<http::Request<Body>>::poll_ready(&mut channel, cx)).await?;
/// let response = channel.call(request).await?;
/// println!("{:?}", response.headers());
/// # Ok(()) }
/// ```
impl<B> tower_service::Service<http::Request<B>> for Channel
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = http::Response<ResponseBody>;
    type Error = Status;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        match self.get_state(true) {
            ConnectivityState::Shutdown => {
                Poll::Ready(Err(Status::unavailable("channel is shut down")))
            }
            _ => Poll::Ready(Ok(())),
        }
    }

    fn call(&mut self, request: http::Request<B>) -> ResponseFuture {
        let channel = self.clone();
        Box::pin(async move { channel.http_call(request).await })
    }
}

impl Channel {
    /// One raw request: pick (wait-for-ready, bounded by `grpc-timeout`), open the
    /// stream, stream the body, await the response head.
    async fn http_call<B>(
        &self,
        request: http::Request<B>,
    ) -> Result<http::Response<ResponseBody>, Status>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        tokio::task::coop::consume_budget().await;
        let active = ActiveCall::new(&self.inner.shared);
        let (mut parts, body) = request.into_parts();
        let deadline = parts
            .headers
            .get(&GRPC_TIMEOUT_NAME)
            .and_then(|v| decode_timeout(v.as_bytes()).ok())
            .map(Deadline::after);
        let path = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        parts.uri = http::Uri::builder()
            .scheme(self.inner.scheme.clone())
            .authority(self.inner.authority.as_str())
            .path_and_query(path.as_str())
            .build()
            .map_err(|e| Status::internal(format!("invalid request path {path:?}: {e}")))?;
        parts.version = http::Version::HTTP_2;
        let metadata = MetadataMap::from_headers(&parts.headers).unwrap_or_default();
        let method = parts.uri.path().to_string();
        let end_of_stream = body.is_end_stream();
        let open = async {
            let snapshot = self.resolved_snapshot(deadline, None).await?;
            let mut attempt = 0;
            loop {
                attempt += 1;
                let (sub, conn, on_done) =
                    self.pick_from(&snapshot, &method, &metadata, true).await?;
                let mut end = CallEnd {
                    on_done,
                    _active: ActiveCall::new(&self.inner.shared),
                };
                let mut ready = match conn.send_request().ready().await {
                    Ok(r) => r,
                    Err(e) => {
                        sub.drop_connection_if(
                            conn.id(),
                            "connection failed before the stream was opened",
                        );
                        if attempt < 2 {
                            end.on_done.take();
                            continue;
                        }
                        let status = Status::unavailable(format!("connection unusable: {e}"));
                        end.finish(&status);
                        return Err(status);
                    }
                };
                let head = http::Request::from_parts(parts.clone(), ());
                match ready.send_request(head, end_of_stream) {
                    Ok((response, send)) => return Ok((sub, conn, end, response, send)),
                    Err(e) if (e.is_go_away() || e.is_io()) && attempt < 2 => {
                        sub.drop_connection_if(conn.id(), "send_request failed");
                        end.on_done.take();
                    }
                    Err(e) => {
                        let status = Status::from_h2_error(&e);
                        end.finish(&status);
                        return Err(status);
                    }
                }
            }
        };
        let (sub, conn, end, response, send) = with_deadline(deadline, None, open).await?;
        drop(active);
        let sender = if end_of_stream {
            None
        } else {
            Some(AbortOnDrop(tokio::spawn(send_body(send, body))))
        };
        let response = match with_deadline(deadline, None, async {
            response.await.map_err(|e| response_error(&sub, &conn, e))
        })
        .await
        {
            Ok(r) => r,
            Err(status) => {
                end.finish(&status);
                return Err(status);
            }
        };
        let (parts, recv) = response.into_parts();
        let mut body = ResponseBody {
            recv: Some(recv),
            data_done: false,
            done: Some(end),
            _sender: sender,
        };
        if body.recv.as_ref().is_some_and(|r| r.is_end_stream()) {
            // Trailers-Only: the status is in the head.
            let status = Status::from_header_map(&parts.headers)
                .unwrap_or_else(|| Status::from_http_status(parts.status));
            body.end(&status);
        }
        Ok(http::Response::from_parts(parts, body))
    }
}

/// Streams `body` onto `send` (waiting for flow-control capacity), then its trailers or
/// END_STREAM; stops when the peer resets the stream. A body error resets it (CANCEL).
async fn send_body<B>(mut send: h2::SendStream<Bytes>, body: B)
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let mut body = std::pin::pin!(body);
    loop {
        let next = poll_fn(|cx| {
            if let Poll::Ready(frame) = body.as_mut().poll_frame(cx) {
                // Nothing of `B::Error` (maybe not `Send`) is held across an await.
                return Poll::Ready(Some(frame.map(|f| f.map_err(Into::<BoxError>::into))));
            }
            // The server may end or reset the stream while we wait for the body.
            match send.poll_reset(cx) {
                Poll::Ready(_) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            }
        })
        .await;
        let Some(frame) = next else { return };
        match frame {
            None => {
                if let Err(e) = send.send_data(Bytes::new(), true) {
                    debug!(error = %e, "ending the request body failed");
                }
                return;
            }
            Some(Err(e)) => {
                debug!(error = %e, "request body failed; resetting the stream");
                send.send_reset(h2::Reason::CANCEL);
                return;
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    let end = body.is_end_stream();
                    if let Err(e) = super::body::send_data(&mut send, data, end).await {
                        debug!(error = %e, "request stream closed while sending");
                        return;
                    }
                    if end {
                        return;
                    }
                }
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        if let Err(e) = send.send_trailers(trailers) {
                            debug!(error = %e, "sending request trailers failed");
                        }
                        return;
                    }
                }
            },
        }
    }
}
