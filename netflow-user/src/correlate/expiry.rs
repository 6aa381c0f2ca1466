//! Expiring open items (timelines, connections) by deadline without
//! scanning them all: a min-heap of (deadline, id) with lazy deletion. Each
//! item has one live entry; when its real deadline moves later nothing is
//! pushed (the entry comes up, is checked and pushed again), when it moves
//! earlier a new entry replaces the live one and the old one is skipped.
use std::{cmp::Reverse, collections::BinaryHeap};

use rustc_hash::FxHashMap;

#[derive(Default)]
pub struct Deadlines {
    heap: BinaryHeap<Reverse<(u64, u64)>>,
    /// id → deadline of its live entry.
    live: FxHashMap<u64, u64>,
}

impl Deadlines {
    /// Look at `id` by `at` (unless its live entry comes earlier).
    pub fn schedule(&mut self, id: u64, at: u64) {
        if self.live.get(&id).is_none_or(|q| at < *q) {
            self.heap.push(Reverse((at, id)));
            self.live.insert(id, at);
        }
    }

    /// Ids whose real deadline (`real(id)`, None when gone) passed by `now`,
    /// in id order; the others come up again at their real deadline.
    pub fn due(&mut self, now: u64, mut real: impl FnMut(u64) -> Option<u64>) -> Vec<u64> {
        let mut done = Vec::new();
        while let Some(Reverse((at, id))) = self.heap.peek().copied() {
            if at > now {
                break;
            }
            self.heap.pop();
            if self.live.get(&id) != Some(&at) {
                continue; // superseded by an earlier entry
            }
            match real(id) {
                Some(r) if r > now => {
                    self.heap.push(Reverse((r, id)));
                    self.live.insert(id, r);
                }
                Some(_) => {
                    self.live.remove(&id);
                    done.push(id);
                }
                None => {
                    self.live.remove(&id);
                }
            }
        }
        done.sort_unstable();
        done
    }

    pub fn clear(&mut self) {
        self.heap.clear();
        self.live.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_come_due_by_their_real_deadline() {
        let mut d = Deadlines::default();
        let mut real = [100u64, 50, 200];
        for (id, at) in real.iter().enumerate() {
            d.schedule(id as u64, *at);
        }
        // Item 0 was touched: its deadline moved later (nothing pushed).
        real[0] = 300;
        // Item 2 closed: its deadline moved earlier.
        real[2] = 60;
        d.schedule(2, 60);
        let mut due = |now| d.due(now, |id| real.get(id as usize).copied());
        assert_eq!(due(55), vec![1]);
        assert_eq!(due(150), vec![2]);
        assert_eq!(due(250), Vec::<u64>::new());
        assert_eq!(due(300), vec![0]);
    }
}
