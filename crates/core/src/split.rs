//! Train/valid/test splits by source document, so no document's chunks sit on two sides.

use std::collections::BTreeMap;

use crate::content_hash;

/// Assigns each document to a split. `docs` holds each document's id and how many records
/// it has; `fractions[i]` is the share of records asked for split `i` (split 0 takes what
/// the others leave). Documents are taken in an order fixed by `seed`; a document joins a
/// split only when that brings the split's record count closer to its target. Every split
/// with a positive fraction gets at least one document while split 0 keeps one. Returns
/// document id -> split index; deterministic for the same input and seed.
#[must_use]
pub fn assign_splits(docs: &[(String, usize)], fractions: &[f64], seed: u64) -> BTreeMap<String, usize> {
    let total: usize = docs.iter().map(|(_, n)| n).sum();
    let mut order: Vec<(String, &str, usize)> =
        docs.iter().map(|(d, n)| (content_hash(format!("{seed}:{d}").as_bytes()), d.as_str(), *n)).collect();
    order.sort();
    let mut out: BTreeMap<String, usize> = order.iter().map(|(_, d, _)| ((*d).to_string(), 0)).collect();
    let mut left = order.len();
    for (split, &fraction) in fractions.iter().enumerate().skip(1) {
        if fraction <= 0.0 || left < 2 {
            continue;
        }
        #[allow(clippy::cast_precision_loss)]
        let target = fraction * total as f64;
        let mut taken = 0usize;
        let mut any = false;
        for (_, d, n) in &order {
            if left < 2 {
                break;
            }
            if out.get(*d) != Some(&0) {
                continue;
            }
            #[allow(clippy::cast_precision_loss)]
            if ((taken + n) as f64 - target).abs() < (taken as f64 - target).abs() {
                out.insert((*d).to_string(), split);
                taken += n;
                left -= 1;
                any = true;
            }
        }
        // A split was asked for: never leave it empty when a document can be spared.
        if !any
            && left >= 2
            && let Some((_, d, _)) =
                order.iter().filter(|(_, d, _)| out.get(*d) == Some(&0)).min_by_key(|(h, _, n)| (*n, h.clone()))
        {
            out.insert((*d).to_string(), split);
            left -= 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docs(n: usize) -> Vec<(String, usize)> {
        (0..n).map(|i| (format!("doc{i}"), 1 + i % 4)).collect()
    }

    #[test]
    fn shares_follow_the_fractions_and_are_deterministic() {
        let d = docs(100);
        let a = assign_splits(&d, &[0.8, 0.1, 0.1], 7);
        assert_eq!(a, assign_splits(&d, &[0.8, 0.1, 0.1], 7));
        assert_ne!(a, assign_splits(&d, &[0.8, 0.1, 0.1], 8));
        let total: usize = d.iter().map(|(_, n)| n).sum();
        for split in 1..3 {
            let n: usize = d.iter().filter(|(id, _)| a[id] == split).map(|(_, n)| n).sum();
            #[allow(clippy::cast_precision_loss)]
            let share = n as f64 / total as f64;
            assert!((share - 0.1).abs() < 0.03, "split {split} has {share}");
        }
    }

    #[test]
    fn small_sets_keep_every_asked_split_non_empty() {
        let a = assign_splits(&docs(3), &[0.8, 0.1, 0.1], 1);
        for split in 0..3 {
            assert!(a.values().any(|s| *s == split), "split {split} empty: {a:?}");
        }
        let b = assign_splits(&docs(1), &[0.8, 0.1, 0.1], 1);
        assert_eq!(b.values().copied().collect::<Vec<_>>(), vec![0]);
        let c = assign_splits(&docs(5), &[1.0, 0.0, 0.0], 1);
        assert!(c.values().all(|s| *s == 0));
    }
}
