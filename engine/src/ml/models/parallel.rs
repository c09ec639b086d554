//! Work spread over the cores with results in a fixed order: the learners and training
//! use it so that a model does not depend on how many threads there are.

use std::sync::atomic::{AtomicUsize, Ordering};

/// The cores this process may use.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// `make(i)` for every `i < count`, on up to `threads` threads, the calling one included
/// (each takes the next index when it is done with one), returned in index order.
pub fn map_in_order<T: Send>(
    count: usize,
    threads: usize,
    make: impl Fn(usize) -> T + Sync,
) -> Vec<T> {
    let threads = threads.clamp(1, count.max(1));
    if threads == 1 {
        return (0..count).map(make).collect();
    }
    let next = AtomicUsize::new(0);
    let work = || {
        let mut mine = Vec::new();
        loop {
            let index = next.fetch_add(1, Ordering::Relaxed);
            if index >= count {
                return mine;
            }
            mine.push((index, make(index)));
        }
    };
    // The calling thread works too: one thread fewer to start.
    let mut made: Vec<(usize, T)> = std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..threads).map(|_| scope.spawn(work)).collect();
        let mut made = work();
        for helper in helpers {
            match helper.join() {
                Ok(theirs) => made.extend(theirs),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        made
    });
    made.sort_by_key(|(index, _)| *index);
    made.into_iter().map(|(_, item)| item).collect()
}

/// Runs `work(first, piece)` over consecutive pieces of `items` (`piece_len` each, the
/// last shorter; `first` is the index of the piece's first item) on up to `threads`
/// threads. Meant for element-wise work, whose result does not depend on how the pieces
/// are shared out.
pub fn pieces_in_parallel<T: Send>(
    items: &mut [T],
    piece_len: usize,
    threads: usize,
    work: impl Fn(usize, &mut [T]) + Sync,
) {
    let piece_len = piece_len.max(1);
    if threads <= 1 || items.len() <= piece_len {
        // One thread, or one piece in all: not worth starting threads.
        for (at, piece) in items.chunks_mut(piece_len).enumerate() {
            work(at * piece_len, piece);
        }
        return;
    }
    let mut shares: Vec<Vec<(usize, &mut [T])>> = (0..threads).map(|_| Vec::new()).collect();
    for (at, piece) in items.chunks_mut(piece_len).enumerate() {
        shares[at % threads].push((at * piece_len, piece));
    }
    let work_share = |share: Vec<(usize, &mut [T])>| {
        for (first, piece) in share {
            work(first, piece);
        }
    };
    let mut shares = shares.into_iter();
    let own = shares.next().unwrap_or_default();
    // The calling thread works on the first share.
    std::thread::scope(|scope| {
        let work_share = &work_share;
        for share in shares {
            scope.spawn(move || work_share(share));
        }
        work_share(own);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_back_in_index_order_on_any_thread_count() {
        for threads in [1, 2, 7] {
            let squares = map_in_order(100, threads, |i| i * i);
            assert_eq!(squares, (0..100).map(|i| i * i).collect::<Vec<_>>());
        }
        assert!(map_in_order(0, 4, |i| i).is_empty());
    }

    #[test]
    fn every_piece_is_worked_once_with_its_first_index() {
        for threads in [1, 2, 5] {
            let mut items = vec![0usize; 1003];
            pieces_in_parallel(&mut items, 100, threads, |first, piece| {
                for (at, item) in piece.iter_mut().enumerate() {
                    *item += first + at;
                }
            });
            assert_eq!(items, (0..1003).collect::<Vec<_>>());
        }
    }
}
