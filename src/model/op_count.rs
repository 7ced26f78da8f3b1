//! Counting the ATen ops a piece of code dispatches, through libtorch's `RecordFunction` hook
//! (tch does not wrap it; `src/native/torch_shim.cpp` does). Counts are per thread and exact:
//! what a forward costs in ops is a property of the code, not of the machine, so tests assert
//! it and `t3d bench` reports it.
//!
//! A *top-level* op is one the Rust code called (not one an op called in turn); a *view* is a
//! top-level op that returned only aliases of its inputs (no kernel ran); `kernels` = top-level
//! ops that are not views, the ops that launch work on a GPU.

use std::ffi::c_char;

#[allow(unsafe_code)]
mod ffi {
    use std::ffi::{c_char, c_int};

    extern "C" {
        pub fn t3d_op_count_start() -> c_int;
        pub fn t3d_op_count_section(enter: c_int);
        pub fn t3d_op_count_stop(
            top: *mut i64,
            views: *mut i64,
            nested: *mut i64,
            section: *mut i64,
            names: *mut c_char,
            capacity: i64,
        ) -> i64;
    }
}

/// One op's tally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedOp {
    /// ATen name, e.g. `aten::linear`.
    pub name: String,
    /// Top-level calls.
    pub calls: u64,
    /// Of those, calls that were views.
    pub views: u64,
}

/// The ops one piece of code dispatched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpCounts {
    /// Top-level ops.
    pub ops: u64,
    /// Top-level ops that only returned aliases of their inputs.
    pub views: u64,
    /// Ops called by other ops.
    pub nested: u64,
    /// Top-level ops inside [`section`]s (a model's layers).
    pub in_sections: u64,
    /// Of those, views.
    pub views_in_sections: u64,
    /// Top-level ops by name, most called first.
    pub by_name: Vec<NamedOp>,
}

impl OpCounts {
    /// Top-level ops that did work (not views).
    pub fn kernels(&self) -> u64 {
        self.ops - self.views
    }

    /// Top-level calls of `name` (e.g. `aten::index_select`).
    pub fn calls_of(&self, name: &str) -> u64 {
        self.by_name
            .iter()
            .find(|op| op.name == name)
            .map_or(0, |op| op.calls)
    }
}

/// Runs `work` as a marked section: while counting, its ops are also tallied apart
/// ([`OpCounts::in_sections`]); otherwise it just runs (two calls of a few nanoseconds).
pub fn section<T>(work: impl FnOnce() -> T) -> T {
    #[allow(unsafe_code)]
    // SAFETY: no pointers; touches thread-local tallies only.
    unsafe {
        ffi::t3d_op_count_section(1)
    };
    let out = work();
    #[allow(unsafe_code)]
    // SAFETY: as above.
    unsafe {
        ffi::t3d_op_count_section(0)
    };
    out
}

/// Runs `work` and counts the ATen ops this thread dispatched meanwhile. Nested counting is not
/// supported: an inner call returns empty counts and leaves the outer one running.
pub fn count_ops<T>(work: impl FnOnce() -> T) -> (T, OpCounts) {
    #[allow(unsafe_code)]
    // SAFETY: no arguments; registers a thread-local callback.
    let started = unsafe { ffi::t3d_op_count_start() } == 0;
    let out = work();
    if !started {
        return (out, OpCounts::default());
    }
    (out, stop())
}

fn stop() -> OpCounts {
    let (mut top, mut views, mut nested) = (0i64, 0i64, 0i64);
    let mut section = [0i64; 2];
    let mut names = vec![0u8; 64 * 1024];
    #[allow(unsafe_code)]
    // SAFETY: the pointers are to live locals and a buffer of the capacity passed.
    let needed = unsafe {
        ffi::t3d_op_count_stop(
            &mut top,
            &mut views,
            &mut nested,
            section.as_mut_ptr(),
            names.as_mut_ptr().cast::<c_char>(),
            names.len() as i64,
        )
    };
    names.truncate((needed.max(1) as usize - 1).min(names.len() - 1));
    let mut by_name: Vec<NamedOp> = String::from_utf8_lossy(&names)
        .lines()
        .filter_map(parse_line)
        .collect();
    by_name.sort_by(|a, b| b.calls.cmp(&a.calls).then_with(|| a.name.cmp(&b.name)));
    OpCounts {
        ops: top as u64,
        views: views as u64,
        nested: nested as u64,
        in_sections: section[0] as u64,
        views_in_sections: section[1] as u64,
        by_name,
    }
}

fn parse_line(line: &str) -> Option<NamedOp> {
    let mut fields = line.split('\t');
    Some(NamedOp {
        name: fields.next()?.to_string(),
        calls: fields.next()?.parse().ok()?,
        views: fields.next()?.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Kind, Tensor};

    #[test]
    fn top_level_ops_views_and_nested_ops_are_told_apart() {
        let a = Tensor::ones([4, 6], (Kind::Float, tch::Device::Cpu));
        let (sum, counts) = count_ops(|| {
            let b = a.view([6, 4]); // a view
            let c = b.transpose(0, 1); // a view
            let d = c.contiguous(); // a copy
            let _ = d.shallow_clone().fill_(1.0); // in place: work
            section(|| b.matmul(&d)) // work, with nested ops
        });
        assert_eq!(sum.size(), vec![6, 6]);
        assert_eq!(counts.ops, 5, "{counts:?}");
        assert_eq!(counts.views, 2, "{counts:?}");
        assert_eq!(counts.kernels(), 3);
        assert!(counts.nested > 0, "matmul dispatches mm");
        assert_eq!(counts.calls_of("aten::transpose"), 1);
        assert_eq!((counts.in_sections, counts.views_in_sections), (1, 0));
        assert_eq!(counts.calls_of("aten::index_select"), 0);
        let (_, outside) = count_ops(|| ());
        assert_eq!(outside.ops, 0, "counting starts from zero each time");
    }
}
