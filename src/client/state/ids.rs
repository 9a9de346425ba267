//! Packet identifier allocation for packets the client sends (2.2.1).
//!
//! One pool per connection, shared by every stream: an identifier that is unique on the
//! connection is unique on each of its streams too, whichever of the two scopes a server
//! keys its state by. Identifiers of packets the server sends are a separate space.

use ahash::AHashSet;

#[derive(Debug)]
pub(super) struct PacketIds {
    next: u16,
    in_use: AHashSet<u16>,
}

impl Default for PacketIds {
    fn default() -> Self {
        PacketIds {
            next: 1,
            in_use: AHashSet::new(),
        }
    }
}

impl PacketIds {
    /// A free, non-zero identifier [MQTT-2.2.1-3], or `None` when all 65,535 are in use
    /// [MQTT-2.2.1-4]. Identifiers are handed out round-robin so a just-released one is not
    /// reused at once (a late duplicate acknowledgement cannot complete the wrong operation).
    pub fn allocate(&mut self) -> Option<u16> {
        if self.in_use.len() >= usize::from(u16::MAX) {
            return None;
        }
        loop {
            let id = self.next;
            self.next = id.checked_add(1).unwrap_or(1);
            if self.in_use.insert(id) {
                return Some(id);
            }
        }
    }

    pub fn is_free(&self, id: u16) -> bool {
        !self.in_use.contains(&id)
    }

    pub fn release(&mut self, id: u16) {
        self.in_use.remove(&id);
    }

    #[cfg(test)]
    pub fn in_use(&self) -> usize {
        self.in_use.len()
    }

    /// Marks `id` as in use (a packet already sent with it).
    pub fn reserve(&mut self, id: u16) {
        self.in_use.insert(id);
    }

    pub fn clear(&mut self) {
        self.in_use.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_non_zero_unique_and_wrap() {
        let mut ids = PacketIds::default();
        assert_eq!(ids.allocate(), Some(1));
        assert_eq!(ids.allocate(), Some(2));
        ids.release(1);
        // Round-robin: 1 is free but 3 comes first.
        assert_eq!(ids.allocate(), Some(3));
        let mut all = PacketIds::default();
        for _ in 0..u16::MAX {
            assert!(all.allocate().is_some());
        }
        assert_eq!(all.allocate(), None);
        all.release(7);
        assert_eq!(all.allocate(), Some(7));
        assert_eq!(all.in_use(), usize::from(u16::MAX));
    }
}
