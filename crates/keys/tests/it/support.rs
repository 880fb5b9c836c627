//! A minimal executor for the stores' futures, which never wait.

use std::future::Future;
use std::task::{Context, Poll, Waker};

pub(crate) fn ready<T>(f: impl Future<Output = T>) -> T {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("store future was not ready"),
    }
}
