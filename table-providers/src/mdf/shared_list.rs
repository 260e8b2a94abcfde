//! [`SharedList`]: the lists of a snapshot that grow with every commit (its files, its history,
//! the files compactions retired), kept so that a new snapshot shares its predecessor's items
//! instead of copying them.

use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A list that grows at its end and whose clone costs O(log n), not O(n): its items are kept
/// in shared chunks, each at least as long as all the chunks after it, like a binary counter's
/// digits. A push joins the last chunks while the one before is no longer than the last, so an
/// item is copied O(log n) times in the list's life and a clone copies at most log2(n) + 1
/// pointers. Serialized and shown (`Debug`) as a plain sequence.
pub struct SharedList<T> {
    chunks: Vec<Arc<Vec<T>>>,
}

impl<T> SharedList<T> {
    /// How many items it holds.
    pub fn len(&self) -> usize {
        self.chunks.iter().map(|chunk| chunk.len()).sum()
    }

    /// Whether it holds no item.
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// The items, first to last (an iterator that knows its length, as Arrow's array
    /// builders require).
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &T> + ExactSizeIterator + Clone {
        Counted {
            items: self.chunks.iter().flat_map(|chunk| chunk.iter()),
            left: self.len(),
        }
    }

    /// The first item.
    pub fn first(&self) -> Option<&T> {
        self.chunks.first().and_then(|chunk| chunk.first())
    }
}

/// `items`, of which `left` are left, as an iterator that says so.
#[derive(Clone)]
struct Counted<I> {
    items: I,
    left: usize,
}

impl<I: Iterator> Iterator for Counted<I> {
    type Item = I::Item;

    fn next(&mut self) -> Option<I::Item> {
        let item = self.items.next()?;
        self.left -= 1;
        Some(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl<I: DoubleEndedIterator> DoubleEndedIterator for Counted<I> {
    fn next_back(&mut self) -> Option<I::Item> {
        let item = self.items.next_back()?;
        self.left -= 1;
        Some(item)
    }
}

impl<I: Iterator> ExactSizeIterator for Counted<I> {}

impl<T: Clone> SharedList<T> {
    /// Adds `item` at the end.
    pub fn push(&mut self, item: T) {
        self.chunks.push(Arc::new(vec![item]));
        while let [.., earlier, last] = self.chunks.as_slice()
            && earlier.len() <= last.len()
        {
            let last = self.chunks.pop().expect("two chunks");
            let earlier = self.chunks.pop().expect("two chunks");
            let mut joined = Arc::unwrap_or_clone(earlier);
            joined.extend(last.iter().cloned());
            self.chunks.push(Arc::new(joined));
        }
    }

    /// Keeps only the items `keep` accepts, which must give the same answer each time it is
    /// asked about an item. Keeping every item copies nothing; dropping any copies those kept.
    pub fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        if self.iter().all(&mut keep) {
            return;
        }
        *self = self.iter().filter(|item| keep(item)).cloned().collect();
    }

    /// Its first `len` items (all of them when it holds fewer): the chunks wholly among them
    /// are shared, only the one `len` cuts through is copied in part.
    pub fn prefix(&self, len: usize) -> Self {
        let mut chunks = Vec::new();
        let mut left = len;
        for chunk in &self.chunks {
            if left == 0 {
                break;
            }
            if chunk.len() <= left {
                chunks.push(Arc::clone(chunk));
                left -= chunk.len();
            } else {
                chunks.push(Arc::new(chunk[..left].to_vec()));
                left = 0;
            }
        }
        Self { chunks }
    }

    /// The items as a vector of their own.
    pub fn to_vec(&self) -> Vec<T> {
        self.iter().cloned().collect()
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for SharedList<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<T> Default for SharedList<T> {
    fn default() -> Self {
        Self { chunks: Vec::new() }
    }
}

impl<T> Clone for SharedList<T> {
    fn clone(&self) -> Self {
        Self {
            chunks: self.chunks.clone(),
        }
    }
}

impl<T> From<Vec<T>> for SharedList<T> {
    fn from(items: Vec<T>) -> Self {
        match items.is_empty() {
            true => Self::default(),
            false => Self {
                chunks: vec![Arc::new(items)],
            },
        }
    }
}

impl<T> FromIterator<T> for SharedList<T> {
    fn from_iter<I: IntoIterator<Item = T>>(items: I) -> Self {
        Self::from(items.into_iter().collect::<Vec<T>>())
    }
}

impl<T: Clone> Extend<T> for SharedList<T> {
    fn extend<I: IntoIterator<Item = T>>(&mut self, items: I) {
        for item in items {
            self.push(item);
        }
    }
}

impl<T: PartialEq> PartialEq for SharedList<T> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl<T: Eq> Eq for SharedList<T> {}

impl<T: Serialize> Serialize for SharedList<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for SharedList<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Vec::<T>::deserialize(deserializer).map(Self::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_holds_what_was_pushed_in_order_in_few_chunks() {
        let mut list = SharedList::from(vec![0, 1, 2]);
        for n in 3..1000 {
            list.push(n);
            assert!(
                list.chunks.len() <= 11,
                "{} chunks for {} items",
                list.chunks.len(),
                n + 1
            );
        }
        assert_eq!(list.len(), 1000);
        assert_eq!(list.to_vec(), (0..1000).collect::<Vec<_>>());
        assert_eq!(list.first(), Some(&0));
        let mut items = list.iter();
        assert_eq!(
            items.len(),
            1000,
            "an exact length, as Arrow's builders require"
        );
        assert_eq!(items.next_back(), Some(&999));
        assert_eq!(items.next(), Some(&0));
        assert_eq!(items.size_hint(), (998, Some(998)));
        // What the history table does with it (it panicked on an unbounded size hint).
        let texts = datafusion::arrow::array::StringArray::from_iter_values(
            list.iter().map(|n| n.to_string()),
        );
        assert_eq!(texts.value(517), "517");
    }

    #[test]
    fn a_clone_shares_the_items_and_grows_apart() {
        let mut list: SharedList<String> = (0..100).map(|n| n.to_string()).collect();
        let before = list.clone();
        assert!(
            Arc::ptr_eq(&before.chunks[0], &list.chunks[0]),
            "shared, not copied"
        );
        list.push("new".into());
        assert_eq!(before.len(), 100);
        assert_eq!(list.len(), 101);
        assert_ne!(before, list);
        assert_eq!(list.iter().last().map(String::as_str), Some("new"));
        assert_eq!(before.iter().last().map(String::as_str), Some("99"));
    }

    #[test]
    fn a_prefix_shares_the_chunks_it_holds_whole() {
        let list: SharedList<u32> = (0..100).collect::<SharedList<_>>();
        let mut list = list;
        list.extend(100..110);
        for len in [0, 1, 99, 100, 101, 105, 110, 200] {
            let prefix = list.prefix(len);
            assert_eq!(
                prefix.to_vec(),
                (0..len.min(110) as u32).collect::<Vec<_>>(),
                "{len}"
            );
        }
        let prefix = list.prefix(104);
        assert!(
            Arc::ptr_eq(&prefix.chunks[0], &list.chunks[0]),
            "the first 100 shared"
        );
        let mut grown = prefix.clone();
        grown.push(7);
        assert_eq!(grown.len(), 105);
        assert_eq!(grown.iter().last(), Some(&7));
        assert_eq!(
            list.len(),
            110,
            "the list a prefix was taken of is unchanged"
        );
    }

    #[test]
    fn retain_keeps_the_accepted_items_in_order() {
        let mut list: SharedList<u32> = SharedList::default();
        list.extend(0..50);
        list.retain(|n| n % 3 == 0);
        assert_eq!(
            list.to_vec(),
            (0..50).filter(|n| n % 3 == 0).collect::<Vec<_>>()
        );
        list.retain(|_| false);
        assert!(list.is_empty());
    }

    #[test]
    fn it_is_serialized_as_a_plain_sequence() {
        let mut list = SharedList::default();
        list.extend([1, 2, 3, 4, 5]);
        let json = serde_json::to_string(&list).unwrap();
        assert_eq!(json, "[1,2,3,4,5]");
        assert_eq!(format!("{list:?}"), "[1, 2, 3, 4, 5]");
        let read: SharedList<i32> = serde_json::from_str(&json).unwrap();
        assert_eq!(read, list);
        assert!(
            serde_json::from_str::<SharedList<i32>>("[]")
                .unwrap()
                .is_empty()
        );
    }
}
