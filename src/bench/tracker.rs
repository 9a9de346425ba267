//! Loss, duplicate and reordering detection: what a subscriber saw of each publisher's
//! sequence numbers.
//!
//! Each (subscriber, publisher) pair has a [`SeqTracker`]: the highest sequence number seen and
//! a bitmap of the [`WINDOW`] numbers below it. A number above the highest is new (the ones it
//! skipped are missing, for now); one inside the window is a duplicate if its bit is set, else a
//! late (reordered) arrival; one older than the window is counted as late and new, since it can
//! no longer be told apart from a duplicate. MQTT keeps one publisher's messages on one topic in
//! order [MQTT-4.6.0], so anything but in-order arrivals is worth reporting. Memory: 8 KiB per
//! pair that exchanged messages.

use ahash::AHashMap;

/// Sequence numbers tracked exactly below the highest one seen.
pub const WINDOW: u64 = 1 << 16;
const WORDS: usize = (WINDOW / 64) as usize;

/// How one arrival compares with what came before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// The next number, or a later one (earlier ones missing so far).
    InOrder,
    /// New, but below a number already seen.
    Reordered,
    /// Seen before.
    Duplicate,
}

/// One publisher's sequence as one subscriber saw it.
#[derive(Debug, Clone)]
pub struct SeqTracker {
    /// Highest number seen + 1.
    next: u64,
    /// Lowest number seen (a subscriber may join a running publisher).
    first: u64,
    /// Bit `n % WINDOW` set: `n` (within the window below `next`) was seen.
    bits: Box<[u64]>,
    pub unique: u64,
    pub duplicates: u64,
    pub reordered: u64,
}

impl Default for SeqTracker {
    fn default() -> Self {
        SeqTracker::new()
    }
}

// `slot` returns a word below WINDOW / 64 = WORDS, the length of `bits`: indexing cannot miss.
#[allow(clippy::indexing_slicing)]
impl SeqTracker {
    pub fn new() -> SeqTracker {
        SeqTracker {
            next: 0,
            first: u64::MAX,
            bits: vec![0u64; WORDS].into_boxed_slice(),
            unique: 0,
            duplicates: 0,
            reordered: 0,
        }
    }

    fn slot(n: u64) -> (usize, u64) {
        let i = n % WINDOW;
        ((i / 64) as usize, 1u64 << (i % 64))
    }

    fn test(&self, n: u64) -> bool {
        let (word, bit) = Self::slot(n);
        self.bits[word] & bit != 0
    }

    fn set(&mut self, n: u64) {
        let (word, bit) = Self::slot(n);
        self.bits[word] |= bit;
    }

    fn clear(&mut self, n: u64) {
        let (word, bit) = Self::slot(n);
        self.bits[word] &= !bit;
    }

    /// Records an arrival of `seq`.
    pub fn observe(&mut self, seq: u32) -> Seen {
        let n = u64::from(seq);
        self.first = self.first.min(n);
        if n >= self.next {
            // The window moves up to n: slots of numbers now too old are reused.
            if n - self.next >= WINDOW {
                self.bits.fill(0);
            } else {
                for m in self.next..n {
                    self.clear(m);
                }
            }
            self.clear(n);
            self.set(n);
            self.next = n + 1;
            self.unique += 1;
            return Seen::InOrder;
        }
        self.reordered += 1;
        if self.next - n > WINDOW {
            // Too old to know: count it as new.
            self.unique += 1;
            return Seen::Reordered;
        }
        if self.test(n) {
            self.reordered -= 1;
            self.duplicates += 1;
            return Seen::Duplicate;
        }
        self.set(n);
        self.unique += 1;
        Seen::Reordered
    }

    /// Numbers between the lowest and the highest seen that never arrived (an estimate of loss
    /// when the number sent is unknown; the tail after the highest is not counted).
    pub fn gaps(&self) -> u64 {
        if self.unique == 0 {
            return 0;
        }
        (self.next - self.first).saturating_sub(self.unique)
    }
}

/// Everything one subscriber received, per publisher.
#[derive(Debug, Default)]
pub struct Tally {
    pub publishers: AHashMap<u32, SeqTracker>,
    /// Messages whose payload was not a bench payload (too short).
    pub foreign: u64,
    /// Every message received, bench or not, duplicates included.
    pub received: u64,
}

impl Tally {
    /// Records a bench message from `publisher`.
    pub fn observe(&mut self, publisher: u32, seq: u32) -> Seen {
        self.received += 1;
        self.publishers.entry(publisher).or_default().observe(seq)
    }

    /// Records a message that is not a bench payload.
    pub fn foreign(&mut self) {
        self.received += 1;
        self.foreign += 1;
    }

    /// Distinct messages received from `publisher`.
    pub fn unique_from(&self, publisher: u32) -> u64 {
        self.publishers.get(&publisher).map_or(0, |t| t.unique)
    }

    pub fn unique(&self) -> u64 {
        self.publishers.values().map(|t| t.unique).sum()
    }

    pub fn duplicates(&self) -> u64 {
        self.publishers.values().map(|t| t.duplicates).sum()
    }

    pub fn reordered(&self) -> u64 {
        self.publishers.values().map(|t| t.reordered).sum()
    }

    pub fn gaps(&self) -> u64 {
        self.publishers.values().map(|t| t.gaps()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_arrivals() {
        let mut t = SeqTracker::new();
        for seq in 0..1000 {
            assert_eq!(t.observe(seq), Seen::InOrder);
        }
        assert_eq!(
            (t.unique, t.duplicates, t.reordered, t.gaps()),
            (1000, 0, 0, 0)
        );
    }

    #[test]
    fn duplicates_reordering_and_gaps() {
        let mut t = SeqTracker::new();
        assert_eq!(t.observe(0), Seen::InOrder);
        assert_eq!(t.observe(2), Seen::InOrder);
        assert_eq!(t.observe(2), Seen::Duplicate);
        assert_eq!(t.gaps(), 1, "1 is missing so far");
        assert_eq!(t.observe(1), Seen::Reordered);
        assert_eq!(t.observe(1), Seen::Duplicate);
        assert_eq!(t.observe(0), Seen::Duplicate);
        assert_eq!(t.observe(5), Seen::InOrder);
        assert_eq!(
            (t.unique, t.duplicates, t.reordered, t.gaps()),
            (4, 3, 1, 2)
        );
    }

    #[test]
    fn a_late_joiner_counts_gaps_from_its_first_message() {
        let mut t = SeqTracker::new();
        for seq in 500..600 {
            t.observe(seq);
        }
        assert_eq!(t.gaps(), 0);
        t.observe(700);
        assert_eq!(t.gaps(), 100, "600..=699");
    }

    #[test]
    fn the_window_slides_and_reuses_its_slots() {
        let mut t = SeqTracker::new();
        let w = WINDOW as u32;
        assert_eq!(t.observe(3), Seen::InOrder);
        // Same slot as 3, one window later: new, and 3's bit must not make it a duplicate.
        assert_eq!(t.observe(3 + w), Seen::InOrder);
        assert_eq!(t.observe(3 + w), Seen::Duplicate);
        // Numbers inside the window below the top are tracked exactly.
        assert_eq!(t.observe(10), Seen::Reordered);
        assert_eq!(t.observe(10), Seen::Duplicate);
        // A jump of more than a window clears everything.
        assert_eq!(t.observe(10 * w), Seen::InOrder);
        assert_eq!(t.observe(10 * w - 1), Seen::Reordered);
        // Older than the window: counted once more as new (cannot tell).
        assert_eq!(t.observe(5), Seen::Reordered);
        assert_eq!(t.observe(5), Seen::Reordered);
        assert_eq!(t.unique, 7);
        assert_eq!(t.duplicates, 2);
    }

    #[test]
    fn tally_keeps_publishers_apart() {
        let mut tally = Tally::default();
        for seq in 0..10 {
            tally.observe(1, seq);
            tally.observe(2, seq);
        }
        tally.observe(2, 3);
        tally.foreign();
        assert_eq!(tally.received, 22);
        assert_eq!(tally.unique(), 20);
        assert_eq!(tally.unique_from(1), 10);
        assert_eq!(tally.unique_from(9), 0);
        assert_eq!(tally.duplicates(), 1);
        assert_eq!(tally.foreign, 1);
    }
}
