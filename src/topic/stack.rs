//! A LIFO work list for the trie walks that keeps its first `N` items on the call stack.
//!
//! The walks are iterative so that a deep topic (a 64 KiB packet can carry ~32 K levels) cannot
//! overflow a task's stack; this keeps them allocation-free for ordinary topic depths and only
//! spills to the heap for pathological ones.

/// A stack of `Copy` items: the first `N` live inline, the rest in a `Vec`.
pub(super) struct InlineStack<T, const N: usize> {
    inline: [Option<T>; N],
    len: usize,
    spill: Vec<T>,
}

impl<T: Copy, const N: usize> InlineStack<T, N> {
    pub(super) fn new() -> Self {
        Self {
            inline: [None; N],
            len: 0,
            spill: Vec::new(),
        }
    }

    pub(super) fn push(&mut self, item: T) {
        match self.inline.get_mut(self.len) {
            Some(slot) => *slot = Some(item),
            None => self.spill.push(item),
        }
        self.len += 1;
    }

    pub(super) fn pop(&mut self) -> Option<T> {
        self.len = self.len.checked_sub(1)?;
        match self.inline.get_mut(self.len) {
            Some(slot) => slot.take(),
            None => self.spill.pop(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::InlineStack;

    #[test]
    fn lifo_across_the_spill() {
        let mut stack = InlineStack::<usize, 2>::new();
        assert_eq!(stack.pop(), None);
        for i in 0..5 {
            stack.push(i);
        }
        for i in (0..5).rev() {
            assert_eq!(stack.pop(), Some(i));
        }
        assert_eq!(stack.pop(), None);
        stack.push(7);
        assert_eq!(stack.pop(), Some(7));
    }
}
