//! The bounded hand-off between a stream's frame thread and its Kafka sender.
//!
//! When Kafka is slow or down, batches pile up here, and what happens when the queue is full
//! depends on the source:
//! - a live camera cannot be paused, so the oldest batch is dropped to make room
//!   ([`Overflow::DropOldest`]); the caller counts its frames as dropped and logs it, and the
//!   consumer sees the gap in frame sequence numbers;
//! - a file can wait, so the frame thread blocks until there is room ([`Overflow::Block`]) and
//!   nothing is dropped.
//!
//! The frame thread pushes (blocking is fine there); the sender task pops asynchronously.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};

use tokio::sync::Notify;

/// What a full queue does with a new batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    DropOldest,
    Block,
}

/// The result of [`BatchQueue::push`].
#[derive(Debug)]
pub enum Pushed<T> {
    Queued,
    /// Queued after dropping this, the oldest batch.
    DroppedOldest(T),
    /// The queue was closed; the batch is handed back.
    Closed(T),
}

#[derive(Debug)]
pub struct BatchQueue<T> {
    state: Mutex<State<T>>,
    capacity: usize,
    overflow: Overflow,
    /// Wakes a blocked pusher when the sender takes a batch.
    space: Condvar,
    /// Wakes the sender when a batch arrives or the queue closes.
    ready: Notify,
}

#[derive(Debug)]
struct State<T> {
    batches: VecDeque<T>,
    closed: bool,
}

impl<T> BatchQueue<T> {
    pub fn new(capacity: usize, overflow: Overflow) -> Self {
        Self {
            state: Mutex::new(State {
                batches: VecDeque::new(),
                closed: false,
            }),
            capacity: capacity.max(1),
            overflow,
            space: Condvar::new(),
            ready: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // The state is a queue and a flag: a panic elsewhere cannot leave it half-updated.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a batch (from the frame thread; may block with [`Overflow::Block`]).
    pub fn push(&self, batch: T) -> Pushed<T> {
        let mut state = self.lock();
        let mut dropped = None;
        while !state.closed && state.batches.len() >= self.capacity {
            match self.overflow {
                Overflow::DropOldest => dropped = state.batches.pop_front(),
                Overflow::Block => {
                    state = self.space.wait(state).unwrap_or_else(|p| p.into_inner());
                }
            }
        }
        if state.closed {
            return Pushed::Closed(batch);
        }
        state.batches.push_back(batch);
        drop(state);
        self.ready.notify_one();
        match dropped {
            Some(old) => Pushed::DroppedOldest(old),
            None => Pushed::Queued,
        }
    }

    /// The next batch, waiting for one; `None` once the queue is closed and empty.
    pub async fn pop(&self) -> Option<T> {
        loop {
            {
                let mut state = self.lock();
                if let Some(batch) = state.batches.pop_front() {
                    drop(state);
                    self.space.notify_one();
                    return Some(batch);
                }
                if state.closed {
                    return None;
                }
            }
            // notify_one keeps a permit when nobody waits, so a push between the check above
            // and this await is not missed.
            self.ready.notified().await;
        }
    }

    /// No more pushes: the sender drains what is queued, then `pop` returns `None`; a pusher
    /// blocked on a full queue gets its batch back.
    pub fn close(&self) {
        self.lock().closed = true;
        self.space.notify_all();
        self.ready.notify_one();
    }

    /// Closes the queue and hands back everything still in it (for shutdown accounting).
    pub fn close_and_take(&self) -> Vec<T> {
        let taken = {
            let mut state = self.lock();
            state.closed = true;
            state.batches.drain(..).collect()
        };
        self.space.notify_all();
        self.ready.notify_one();
        taken
    }

    pub fn len(&self) -> usize {
        self.lock().batches.len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use common::{FrameBatch, StreamId};
    use uuid::Uuid;

    use super::*;

    fn batch(seq: u64) -> FrameBatch {
        FrameBatch {
            stream_id: StreamId::new("cam").unwrap(),
            producer_session: Uuid::nil(),
            batch_seq: seq,
            partial: false,
            frames: Vec::new(),
        }
    }

    #[tokio::test]
    async fn a_live_queue_drops_the_oldest_when_full() {
        let q = BatchQueue::new(2, Overflow::DropOldest);
        assert!(matches!(q.push(batch(0)), Pushed::Queued));
        assert!(matches!(q.push(batch(1)), Pushed::Queued));
        match q.push(batch(2)) {
            Pushed::DroppedOldest(old) => assert_eq!(old.batch_seq, 0),
            other => panic!("expected a drop, got {other:?}"),
        }
        assert_eq!(q.pop().await.unwrap().batch_seq, 1);
        assert_eq!(q.pop().await.unwrap().batch_seq, 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_file_queue_blocks_and_loses_nothing() {
        let q = Arc::new(BatchQueue::new(1, Overflow::Block));
        let pusher = {
            let q = q.clone();
            std::thread::spawn(move || {
                for seq in 0..20 {
                    assert!(matches!(q.push(batch(seq)), Pushed::Queued));
                }
                q.close();
            })
        };
        let mut seen = Vec::new();
        while let Some(b) = q.pop().await {
            seen.push(b.batch_seq);
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        pusher.join().unwrap();
        assert_eq!(seen, (0..20).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn close_drains_then_ends() {
        let q = BatchQueue::new(4, Overflow::Block);
        q.push(batch(7));
        q.close();
        assert!(matches!(q.push(batch(8)), Pushed::Closed(_)));
        assert_eq!(q.pop().await.unwrap().batch_seq, 7);
        assert!(q.pop().await.is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_blocked_pusher_gets_its_batch_back_at_close() {
        let q = Arc::new(BatchQueue::new(1, Overflow::Block));
        q.push(batch(0));
        let pusher = {
            let q = q.clone();
            std::thread::spawn(move || q.push(batch(1)))
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let left = q.close_and_take();
        assert_eq!(left.len(), 1);
        assert!(matches!(pusher.join().unwrap(), Pushed::Closed(b) if b.batch_seq == 1));
    }
}
