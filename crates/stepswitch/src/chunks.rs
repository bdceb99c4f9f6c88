//! A dense array stored as reference-counted chunks: indexing costs one more pointer than a
//! `Vec`, and a copy of the array shares every chunk, so a table updated in one slot
//! ([`Chunks::set`]) or grown by one ([`Chunks::push`]) copies one chunk and the chunk list,
//! not the array.

use std::sync::Arc;

/// A dense array of `T` in chunks of `1 << SHIFT` items, each chunk shared between copies.
pub(crate) struct Chunks<T, const SHIFT: u32> {
    chunks: Vec<Arc<[T]>>,
    len: usize,
}

impl<T, const SHIFT: u32> Chunks<T, SHIFT> {
    const SIZE: usize = 1 << SHIFT;

    /// An empty array.
    pub(crate) fn new() -> Self {
        Chunks { chunks: Vec::new(), len: 0 }
    }

    /// The items of `items`, in order.
    pub(crate) fn from_vec(items: Vec<T>) -> Self {
        let len = items.len();
        let mut chunks = Vec::with_capacity(len.div_ceil(Self::SIZE));
        let mut items = items.into_iter();
        loop {
            let chunk: Vec<T> = items.by_ref().take(Self::SIZE).collect();
            if chunk.is_empty() {
                break;
            }
            chunks.push(Arc::from(chunk));
        }
        Chunks { chunks, len }
    }

    /// Number of items.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The item at `idx`, if any.
    #[inline]
    pub(crate) fn get(&self, idx: usize) -> Option<&T> {
        self.chunks.get(idx >> SHIFT).and_then(|chunk| chunk.get(idx & (Self::SIZE - 1)))
    }

    /// The items in order.
    pub(crate) fn iter(&self) -> impl DoubleEndedIterator<Item = &T> + Clone + '_ {
        self.chunks.iter().flat_map(|chunk| chunk.iter())
    }
}

impl<T: Clone, const SHIFT: u32> Chunks<T, SHIFT> {
    /// Replaces the item at `idx` (which must exist), copying its chunk first when another
    /// array shares it.
    pub(crate) fn set(&mut self, idx: usize, value: T) {
        let chunk = &mut self.chunks[idx >> SHIFT];
        if Arc::get_mut(chunk).is_none() {
            *chunk = Arc::from(chunk.to_vec());
        }
        let items = Arc::get_mut(chunk).expect("the chunk was just made unique");
        items[idx & (Self::SIZE - 1)] = value;
    }

    /// Appends `value`, copying the last chunk first when another array shares it (a copy
    /// of the array keeps its own length and items).
    pub(crate) fn push(&mut self, value: T) {
        match self.chunks.last_mut() {
            Some(last) if last.len() < Self::SIZE => {
                let mut items = Vec::with_capacity(last.len() + 1);
                items.extend_from_slice(last);
                items.push(value);
                *last = Arc::from(items);
            }
            _ => self.chunks.push(Arc::from(vec![value])),
        }
        self.len += 1;
    }
}

impl<T, const SHIFT: u32> Clone for Chunks<T, SHIFT> {
    /// Shares every chunk.
    fn clone(&self) -> Self {
        Chunks { chunks: self.chunks.clone(), len: self.len }
    }
}

impl<T, const SHIFT: u32> std::ops::Index<usize> for Chunks<T, SHIFT> {
    type Output = T;

    #[inline]
    fn index(&self, idx: usize) -> &T {
        &self.chunks[idx >> SHIFT][idx & (Self::SIZE - 1)]
    }
}

impl<T: std::fmt::Debug, const SHIFT: u32> std::fmt::Debug for Chunks<T, SHIFT> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_shares_chunks_until_one_is_set() {
        let items: Chunks<u32, 2> = Chunks::from_vec((0..10).collect());
        assert_eq!(items.len(), 10);
        assert_eq!(items.iter().copied().collect::<Vec<_>>(), (0..10).collect::<Vec<_>>());
        let mut copy = items.clone();
        copy.set(5, 50);
        assert_eq!((items[5], copy[5], copy[4], copy[9]), (5, 50, 4, 9));
        assert!(Arc::ptr_eq(&items.chunks[0], &copy.chunks[0]));
        assert!(!Arc::ptr_eq(&items.chunks[1], &copy.chunks[1]));
        assert_eq!(copy.get(10), None);
        assert_eq!(copy.iter().next_back(), Some(&9));
        assert!(Chunks::<u8, 3>::from_vec(Vec::new()).iter().next().is_none());
        let mut grown = items.clone();
        for value in 10..13 {
            grown.push(value);
        }
        assert_eq!(grown.iter().copied().collect::<Vec<_>>(), (0..13).collect::<Vec<_>>());
        assert_eq!((items.len(), grown.len(), grown[12]), (10, 13, 12));
        assert!(Arc::ptr_eq(&items.chunks[1], &grown.chunks[1]));
        assert_eq!(items.iter().copied().collect::<Vec<_>>(), (0..10).collect::<Vec<_>>());
    }
}
