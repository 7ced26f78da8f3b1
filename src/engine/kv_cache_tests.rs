//! The KV cache's accounting and its strided batch view.

use super::*;

/// `pages` pages of 4 positions shared by `slots` slots of up to 48 positions each.
fn cache(pages: usize, slots: usize) -> KvCache {
    let shape = CacheShape {
        max_sequences: slots,
        pages,
        page_size: 4,
        max_context: 48,
    };
    KvCache::new(&SdarConfig::tiny(16), shape, Kind::Float, Device::Cpu)
}

#[test]
fn admission_promises_pages_and_release_returns_them() {
    let mut c = cache(10, 3);
    assert_eq!(c.admission(49), Admission::Never, "longer than a slot");
    let a = c.allocate(24).unwrap(); // 6 pages promised
    assert_eq!(c.admission(20), Admission::Wait, "5 > 4 unpromised");
    let b = c.allocate(16).unwrap(); // 4 pages
    assert_eq!((a, b), (0, 1), "lowest slots first");
    assert_eq!(c.pages_in_use(), 0, "promised, not taken");
    c.grow(&[(a, 9), (b, 4)]).unwrap();
    assert_eq!(c.pages_in_use(), 4);
    assert!(c.grow(&[(b, 17)]).is_err(), "b was promised 4 pages");
    c.release(a);
    assert_eq!(c.pages_in_use(), 1);
    assert_eq!(c.admission(24), Admission::Fits);
    assert_eq!(c.allocate(24), Some(0), "the freed slot is the lowest");
}

#[test]
fn a_batch_of_slots_is_one_view_of_the_pool() {
    let c = cache(30, 3);
    let write = |slot: i64, position: i64| slot * 48 + position;
    let plan = WritePlan {
        write_rows: Tensor::from_slice(&[write(1, 0), write(1, 1), write(2, 0), write(2, 1)])
            .view([2, 2]),
        first_slot: 1,
        rows: 2,
        key_len: 2,
    };
    let new = Tensor::arange(2 * 2 * 2 * 16, (Kind::Float, Device::Cpu)).view([2, 2, 2, 16]);
    let binding = c.bind(&plan);
    let (keys, values) = binding.attend_over(1, &new, &(&new * 2.0));
    assert_eq!(keys.size(), vec![2, 2, 2, 16]);
    assert_eq!(binding.materialised_bytes(), 0, "views of the cache");
    assert!(keys.equal(&new.transpose(1, 2)));
    assert!(values.equal(&(new.transpose(1, 2) * 2.0)));
}

#[test]
fn a_sequence_slot_limit_still_applies() {
    let mut c = cache(100, 1);
    c.allocate(4).unwrap();
    assert_eq!(c.admission(4), Admission::Wait);
}
