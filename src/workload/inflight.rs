//! The publisher's window of unconfirmed messages: a ring in send order, so the oldest
//! unconfirmed message (for the confirm timeout) and the list of unconfirmed messages
//! after a failure (to republish) are at hand without a map or an allocation per message.

/// One unconfirmed message.
#[derive(Debug, Clone, Copy, Default)]
pub struct InFlight {
    pub seq: u32,
    pub attempt: u16,
    pub intended_ns: u64,
    pub sent_ns: u64,
    done: bool,
}

impl InFlight {
    /// A message sent at `sent_ns`.
    pub fn new(seq: u32, attempt: u16, intended_ns: u64, sent_ns: u64) -> Self {
        Self {
            seq,
            attempt,
            intended_ns,
            sent_ns,
            done: false,
        }
    }
}

/// Messages from the oldest unconfirmed one to the newest sent, by send order.
#[derive(Debug)]
pub struct Window {
    slots: Vec<InFlight>,
    /// Id of the oldest slot not yet known done.
    head: u64,
    /// Id the next message gets.
    tail: u64,
}

impl Window {
    /// Room for `capacity` messages between the oldest unconfirmed and the newest.
    pub fn new(capacity: usize) -> Self {
        Self {
            slots: vec![InFlight::default(); capacity.max(1)],
            head: 0,
            tail: 0,
        }
    }

    /// True when no more message fits (the oldest unconfirmed holds the ring back).
    #[inline]
    pub fn is_full(&self) -> bool {
        (self.tail - self.head) as usize >= self.slots.len()
    }

    /// Adds a sent message; returns its id.
    #[inline]
    pub fn push(&mut self, entry: InFlight) -> u64 {
        debug_assert!(!self.is_full());
        let id = self.tail;
        let capacity = self.slots.len() as u64;
        self.slots[(id % capacity) as usize] = entry;
        self.tail += 1;
        id
    }

    /// Marks message `id` answered and returns it.
    #[inline]
    pub fn complete(&mut self, id: u64) -> InFlight {
        let capacity = self.slots.len() as u64;
        let slot = &mut self.slots[(id % capacity) as usize];
        slot.done = true;
        let entry = *slot;
        while self.head < self.tail && self.slots[(self.head % capacity) as usize].done {
            self.head += 1;
        }
        entry
    }

    /// Send time of the oldest unanswered message.
    pub fn oldest_sent_ns(&self) -> Option<u64> {
        (self.head < self.tail)
            .then(|| self.slots[(self.head % self.slots.len() as u64) as usize].sent_ns)
    }

    /// Removes and returns every unanswered message, oldest first.
    pub fn take_unanswered(&mut self) -> Vec<InFlight> {
        let capacity = self.slots.len() as u64;
        let pending = (self.head..self.tail)
            .map(|id| self.slots[(id % capacity) as usize])
            .filter(|e| !e.done)
            .collect();
        self.head = self.tail;
        pending
    }

    /// True when nothing is unanswered.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.head == self.tail
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_order_answers_keep_the_oldest_in_view() {
        let mut window = Window::new(4);
        let ids: Vec<u64> = (0..4)
            .map(|seq| window.push(InFlight::new(seq, 0, 0, u64::from(seq) * 10)))
            .collect();
        assert!(window.is_full());
        window.complete(ids[1]);
        window.complete(ids[2]);
        assert!(window.is_full(), "seq 0 still holds the ring");
        assert_eq!(window.oldest_sent_ns(), Some(0));
        window.complete(ids[0]);
        assert_eq!(window.oldest_sent_ns(), Some(30));
        assert!(!window.is_full());
        window.push(InFlight::new(4, 0, 0, 40));
        let left: Vec<u32> = window.take_unanswered().iter().map(|e| e.seq).collect();
        assert_eq!(left, vec![3, 4]);
        assert!(window.is_empty());
    }
}
