//! A request stream the client canceled is not one it ended.
//!
//! hyper hands a client's RST_STREAM(CANCEL) to the request body as an
//! error, and tonic's request decoder turns a `Cancelled` error into a
//! plain end of stream. A FinishJob (or PushTemplate) whose sender gave up
//! after its last chunk would then look complete and be committed. Both
//! services are wrapped here so that a cancel reaches the handler as an
//! ABORTED broken stream, like any other (`transfer::read_upload` stores
//! nothing then): only a stream the client ended counts as complete.

use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::{Frame, SizeHint};
use tonic::body::Body;
use tonic::codegen::{Bytes, Service, http};
use tonic::server::NamedService;
use tonic::{Code, Status};

/// `S` with request bodies that report a client's cancel as an error.
#[derive(Debug, Clone)]
pub struct CancelIsAbort<S>(pub S);

impl<S: NamedService> NamedService for CancelIsAbort<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<http::Request<Body>> for CancelIsAbort<S>
where
    S: Service<http::Request<Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> S::Future {
        self.0.call(req.map(|b| Body::new(Watched(b))))
    }
}

/// A request body whose `Cancelled` error is turned into `Aborted`, which
/// tonic passes on to the handler.
struct Watched(Body);

impl http_body::Body for Watched {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        match Pin::new(&mut self.0).poll_frame(cx) {
            Poll::Ready(Some(Err(st))) if st.code() == Code::Cancelled => Poll::Ready(Some(Err(
                Status::aborted("the client canceled it before its end"),
            ))),
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.0.size_hint()
    }
}
