//! The threads the pipeline runs its GPU models on: one lane per model section, kept for the
//! pipeline's life, so each model always runs on the same thread. ONNX Runtime's CUDA
//! provider keeps its per-thread state there, its CUDA graph included: a model run on a new
//! thread each frame would set that up anew each frame, and never replay a graph.

use std::sync::Mutex;

pub struct Lanes {
    /// A thread per lane, and one more for the models on the CPU, which run in turn there.
    pool: rayon::ThreadPool,
    count: usize,
}

impl Lanes {
    pub fn new(count: usize) -> anyhow::Result<Lanes> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(count + 1)
            .thread_name(|i| format!("lane-{i}"))
            .build()?;
        Ok(Lanes { pool, count })
    }

    /// Runs `work` on every item: an item `lane_of` gives a lane (below the count) runs on
    /// that lane's thread, side by side with the others, so that the tasks' CPU
    /// pre-processing and decoding overlap and their GPU work queues up at once. The items
    /// without one run one after another on the extra thread, since a CPU session already
    /// uses every core. Returns when every item is done.
    pub fn run<T: Send>(
        &self,
        items: impl IntoIterator<Item = T>,
        lane_of: impl Fn(&T) -> Option<usize>,
        work: impl Fn(T) + Sync,
    ) {
        let mut lanes: Vec<Vec<T>> = (0..=self.count).map(|_| Vec::new()).collect();
        for item in items {
            let lane = lane_of(&item).filter(|&lane| lane < self.count);
            lanes[lane.unwrap_or(self.count)].push(item);
        }
        if lanes[..self.count].iter().all(Vec::is_empty) {
            // Only CPU work: no reason to leave the calling thread.
            lanes.pop().into_iter().flatten().for_each(&work);
            return;
        }
        let lanes: Vec<Mutex<Vec<T>>> = lanes.into_iter().map(Mutex::new).collect();
        self.pool.broadcast(|context| {
            let mine = std::mem::take(&mut *lanes[context.index()].lock().unwrap());
            mine.into_iter().for_each(&work);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::thread::ThreadId;

    /// Which thread ran each item, over several rounds.
    fn threads_of(
        lanes: &Lanes,
        rounds: usize,
        items: &[(char, Option<usize>)],
    ) -> HashMap<char, Vec<ThreadId>> {
        let seen = Mutex::new(HashMap::<char, Vec<ThreadId>>::new());
        for _ in 0..rounds {
            lanes.run(
                items.iter().copied(),
                |(_, lane)| *lane,
                |(name, _)| {
                    let here = std::thread::current().id();
                    seen.lock().unwrap().entry(name).or_default().push(here);
                },
            );
        }
        seen.into_inner().unwrap()
    }

    #[test]
    fn each_lane_runs_its_items_on_the_same_thread_every_round() {
        let lanes = Lanes::new(3).unwrap();
        let seen = threads_of(&lanes, 5, &[('a', Some(0)), ('b', Some(2)), ('c', None)]);
        for name in ['a', 'b', 'c'] {
            let threads = &seen[&name];
            assert_eq!(threads.len(), 5, "{name} ran every round");
            assert!(
                threads.iter().all(|t| *t == threads[0]),
                "{name} stayed on one thread"
            );
        }
        let caller = std::thread::current().id();
        assert!(seen.values().all(|threads| threads[0] != caller));
        assert_ne!(
            seen[&'a'][0], seen[&'b'][0],
            "lanes are threads of their own"
        );
    }

    #[test]
    fn gpu_items_run_side_by_side() {
        // Each of two lane items waits for the other to start: run in turn, the first would
        // give up at the deadline.
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::time::{Duration, Instant};
        let lanes = Lanes::new(2).unwrap();
        let (started, met) = (AtomicUsize::new(0), AtomicUsize::new(0));
        lanes.run(
            [0, 1],
            |&lane| Some(lane),
            |_| {
                started.fetch_add(1, Ordering::SeqCst);
                let deadline = Instant::now() + Duration::from_secs(60);
                while started.load(Ordering::SeqCst) < 2 && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(1));
                }
                if started.load(Ordering::SeqCst) == 2 {
                    met.fetch_add(1, Ordering::SeqCst);
                }
            },
        );
        assert_eq!(met.into_inner(), 2, "both lanes ran at once");
    }

    #[test]
    fn cpu_items_alone_run_on_the_calling_thread_in_order() {
        let lanes = Lanes::new(2).unwrap();
        let order = Mutex::new(Vec::new());
        let caller = std::thread::current().id();
        lanes.run(
            [1, 2, 3],
            |_| None,
            |item| {
                assert_eq!(std::thread::current().id(), caller);
                order.lock().unwrap().push(item);
            },
        );
        assert_eq!(order.into_inner().unwrap(), vec![1, 2, 3]);
    }
}
