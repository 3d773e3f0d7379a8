//! The bounded queue between what visiond has to say and the broker. A broker that is down
//! or slow fills it; then the oldest results (or status, refreshed anyway) make room, never
//! an event while a result is left to drop.

use bytes::Bytes;
use rumqttc::QoS;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use tokio::sync::Notify;

/// Messages held while the broker cannot take them.
pub const CAPACITY: usize = 256;

#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub topic: String,
    pub payload: Bytes,
    pub retain: bool,
    pub qos: QoS,
    /// Superseded by the next one of its kind (results, status): dropped first.
    pub periodic: bool,
}

impl Message {
    /// An event or a state change: delivered at least once, never dropped before results.
    pub fn event(topic: String, payload: impl Into<Bytes>, retain: bool) -> Message {
        Message {
            topic,
            payload: payload.into(),
            retain,
            qos: QoS::AtLeastOnce,
            periodic: false,
        }
    }

    /// A periodic message (results, status): the next one replaces a lost one.
    pub fn periodic(topic: String, payload: impl Into<Bytes>, retain: bool) -> Message {
        Message {
            topic,
            payload: payload.into(),
            retain,
            qos: QoS::AtMostOnce,
            periodic: true,
        }
    }
}

pub struct Outbox {
    queue: Mutex<VecDeque<Message>>,
    capacity: usize,
    ready: Notify,
    dropped: AtomicU64,
}

impl Outbox {
    pub fn new(capacity: usize) -> Outbox {
        Outbox {
            queue: Mutex::new(VecDeque::with_capacity(capacity)),
            capacity,
            ready: Notify::new(),
            dropped: AtomicU64::new(0),
        }
    }

    /// Queues `message`, dropping the oldest periodic one (else the oldest) when full. Never
    /// waits.
    pub fn push(&self, message: Message) {
        let mut queue = self.lock();
        if queue.len() >= self.capacity {
            let victim = queue.iter().position(|m| m.periodic).unwrap_or(0);
            queue.remove(victim);
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        queue.push_back(message);
        drop(queue);
        self.ready.notify_one();
    }

    /// The oldest message, waiting for one. One consumer.
    pub async fn pop(&self) -> Message {
        loop {
            if let Some(message) = self.lock().pop_front() {
                return message;
            }
            // A push between the check and here left a permit: this returns at once.
            self.ready.notified().await;
        }
    }

    /// Messages dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Message>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(outbox: &Outbox) -> Vec<String> {
        let mut topics = Vec::new();
        while let Some(message) = outbox.lock().pop_front() {
            topics.push(message.topic);
        }
        topics
    }

    #[test]
    fn a_full_queue_drops_the_oldest_results_before_any_event() {
        let outbox = Outbox::new(3);
        outbox.push(Message::event("e1".into(), "", false));
        outbox.push(Message::periodic("r1".into(), "", false));
        outbox.push(Message::periodic("r2".into(), "", false));
        outbox.push(Message::event("e2".into(), "", false));
        outbox.push(Message::event("e3".into(), "", false));
        assert_eq!(drain(&outbox), ["e1", "e2", "e3"]);
        assert_eq!(outbox.dropped(), 2);
        // Only events left: the oldest goes, so the queue stays bounded.
        for topic in ["e4", "e5", "e6", "e7"] {
            outbox.push(Message::event(topic.into(), "", false));
        }
        assert_eq!(drain(&outbox), ["e5", "e6", "e7"]);
    }

    #[tokio::test]
    async fn pop_waits_for_a_push() {
        let outbox = std::sync::Arc::new(Outbox::new(4));
        let waiter = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.pop().await.topic }
        });
        tokio::task::yield_now().await;
        outbox.push(Message::event("hello".into(), "", false));
        assert_eq!(waiter.await.unwrap(), "hello");
    }
}
