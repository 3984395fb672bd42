//! Where hyper runs HTTP/2 streams. hyper hands each stream (the service
//! call's future and the sending of its answer) to an executor;
//! `TokioExecutor` spawns each as a task. pulse answers most requests at
//! once, so such a task is mostly overhead: allocated, scheduled and polled,
//! and then it wakes the connection to send the answer.
//!
//! With [`Streams`], the connection's own task runs them instead. A stream
//! handed over while the connection is polled waits in the connection's
//! [`Handed`] list; the task wakes itself and, on its next poll, polls each
//! waiting stream once, then the connection, which sends the answers of the
//! whole burst in one write. A stream not done in that poll (an `Async`
//! handler waiting for a request body) becomes a task of its own.
//!
//! Why wait for the next poll: the other connections' tasks run first, as
//! they did between a stream's spawning and its task, which keeps enough
//! answers alive at once that musl does not unmap their memory. What it
//! saves: docs/performance.md, "HTTP/2 streams in the connection's task".
//!
//! A panic in a stream's poll ends its connection instead of one stream;
//! handlers' panics never get this far (`App::handle` catches them).

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

type Stream = Pin<Box<dyn Future<Output = ()> + Send>>;

thread_local! {
    /// The streams handed over during the poll of a connection on this
    /// thread. A poll is synchronous, so they are all that connection's.
    static HANDED_OVER: Cell<Vec<Stream>> = const { Cell::new(Vec::new()) };
    /// Whether a connection is being polled on this thread, through
    /// [`poll_connection`]; outside one, a stream becomes a task at once.
    static COLLECTING: Cell<bool> = const { Cell::new(false) };
    /// Whether `HANDED_OVER` has streams: HTTP/1 connections never hand any
    /// over, and checking a flag costs them less than taking the list.
    static ANY_HANDED_OVER: Cell<bool> = const { Cell::new(false) };
}

/// The executor to give `auto::Builder`; see the module docs.
#[derive(Clone, Copy, Debug, Default)]
pub struct Streams;

impl<F> hyper::rt::Executor<F> for Streams
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, future: F) {
        // Boxed either way: one kind of task to compile instead of one per
        // kind of future hyper hands over (about 10 KB of binary each).
        let stream: Stream = Box::pin(future);
        if !COLLECTING.get() {
            tokio::spawn(stream);
            return;
        }
        crate::allocation::pin_response_map_runs();
        let mut streams = HANDED_OVER.take();
        streams.push(stream);
        HANDED_OVER.set(streams);
        ANY_HANDED_OVER.set(true);
    }
}

/// The streams one connection handed over and has not polled yet.
#[derive(Default)]
pub struct Handed(Vec<Stream>);

/// Polls `connection`, a future serving one connection with the
/// [`Streams`] executor: first the streams it handed over last time, then
/// the connection itself, which sends their answers.
pub fn poll_connection<C: Future + ?Sized>(
    mut connection: Pin<&mut C>,
    handed: &mut Handed,
    cx: &mut Context<'_>,
) -> Poll<C::Output> {
    if !handed.0.is_empty() {
        run_handed(handed);
    }
    let poll = {
        let _collecting = Collecting::start();
        connection.as_mut().poll(cx)
    };
    if ANY_HANDED_OVER.replace(false) {
        take_handed_over(handed, poll.is_ready(), cx);
    }
    poll
}

/// Marks this thread as polling a connection until dropped, also when the
/// poll panics: tokio catches a task's panic and the thread goes on, and a
/// flag left set would keep every later stream handed over outside a
/// connection's poll waiting for one that may never come.
struct Collecting;

impl Collecting {
    fn start() -> Collecting {
        COLLECTING.set(true);
        Collecting
    }
}

impl Drop for Collecting {
    fn drop(&mut self) {
        COLLECTING.set(false);
    }
}

/// Moves the streams handed over during this poll to `handed`, to be
/// polled on the next one, to which the task wakes itself. Out of line:
/// HTTP/1 connections never get here.
#[cold]
#[inline(never)]
fn take_handed_over(handed: &mut Handed, connection_ended: bool, cx: &Context<'_>) {
    let mut streams = HANDED_OVER.take();
    handed.0.append(&mut streams);
    // The emptied list keeps its room for the next poll.
    HANDED_OVER.set(streams);
    if connection_ended {
        // The connection is gone; each stream finds out in its task.
        for stream in handed.0.drain(..) {
            tokio::spawn(stream);
        }
    } else {
        // h2 usually wakes the task already when new streams arrive; this
        // does not depend on it.
        cx.waker().wake_by_ref();
    }
}

/// Polls each stream once; one not done becomes a task.
#[inline(never)]
fn run_handed(handed: &mut Handed) {
    for mut stream in handed.0.drain(..) {
        // A waker that does nothing: a stream not done now becomes a task,
        // whose first poll registers its own (a future checks its state
        // again on every poll, so nothing that happens meanwhile is lost).
        if stream
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
            .is_pending()
        {
            tokio::spawn(stream);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::task::Wake;

    use hyper::rt::Executor;
    use tokio::sync::oneshot;

    use super::*;

    /// Counts its wake-ups.
    #[derive(Default)]
    struct Wakes(AtomicUsize);

    impl Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A connection whose first poll hands over `streams` and which then
    /// stays open.
    struct Connection(Vec<Stream>);

    impl Future for Connection {
        type Output = ();

        fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
            for stream in self.0.drain(..) {
                Streams.execute(stream);
            }
            Poll::Pending
        }
    }

    fn flag_set_when_polled(flag: &Arc<AtomicBool>) -> Stream {
        let flag = Arc::clone(flag);
        Box::pin(async move { flag.store(true, Ordering::SeqCst) })
    }

    #[test]
    fn a_stream_runs_on_the_connections_next_poll_which_it_asks_for() {
        let answered = Arc::new(AtomicBool::new(false));
        let mut connection = Connection(vec![flag_set_when_polled(&answered)]);
        let mut handed = Handed::default();
        let wakes = Arc::new(Wakes::default());
        let waker = Waker::from(Arc::clone(&wakes));
        let mut cx = Context::from_waker(&waker);

        let poll = poll_connection(Pin::new(&mut connection), &mut handed, &mut cx);
        assert!(poll.is_pending());
        assert!(
            !answered.load(Ordering::SeqCst),
            "polled during the connection's poll"
        );
        assert_eq!(handed.0.len(), 1);
        assert_eq!(
            wakes.0.load(Ordering::SeqCst),
            1,
            "the task must wake itself"
        );

        let poll = poll_connection(Pin::new(&mut connection), &mut handed, &mut cx);
        assert!(poll.is_pending());
        assert!(
            answered.load(Ordering::SeqCst),
            "not polled on the next poll"
        );
        assert!(handed.0.is_empty());
        assert_eq!(
            wakes.0.load(Ordering::SeqCst),
            1,
            "woke again with nothing to do"
        );
    }

    #[tokio::test]
    async fn a_stream_not_done_at_once_goes_on_as_a_task() {
        let (send, receive) = oneshot::channel::<()>();
        let (done, finished) = oneshot::channel::<()>();
        let waiting: Stream = Box::pin(async move {
            let _ = receive.await;
            let _ = done.send(());
        });
        let mut connection = Connection(vec![waiting]);
        let mut handed = Handed::default();
        let mut cx = Context::from_waker(Waker::noop());
        let _ = poll_connection(Pin::new(&mut connection), &mut handed, &mut cx);
        let _ = poll_connection(Pin::new(&mut connection), &mut handed, &mut cx);
        assert!(
            handed.0.is_empty(),
            "a waiting stream stayed with the connection"
        );

        send.send(()).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), finished)
            .await
            .expect("the stream's task never finished")
            .expect("the stream was dropped instead of run");
    }

    #[tokio::test]
    async fn a_panicking_connection_poll_leaves_later_streams_to_run_as_tasks() {
        struct Panicking;
        impl Future for Panicking {
            type Output = ();
            fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
                panic!("connection poll")
            }
        }
        let mut handed = Handed::default();
        let mut cx = Context::from_waker(Waker::noop());
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            poll_connection(Pin::new(&mut Panicking), &mut handed, &mut cx)
        }));
        assert!(panicked.is_err());
        a_stream_handed_over_now_runs_to_the_end().await;
    }

    #[tokio::test]
    async fn outside_a_connections_poll_a_stream_is_a_task_at_once() {
        a_stream_handed_over_now_runs_to_the_end().await;
    }

    /// Hands a stream over, outside any connection's poll, and waits for it
    /// to finish.
    async fn a_stream_handed_over_now_runs_to_the_end() {
        let (done, finished) = oneshot::channel::<()>();
        Streams.execute(async move {
            let _ = done.send(());
        });
        tokio::time::timeout(std::time::Duration::from_secs(5), finished)
            .await
            .expect("the stream never finished: it waits for a connection's poll")
            .expect("the stream was dropped instead of run");
    }
}
