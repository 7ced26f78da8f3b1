//! CUDA graphs for the decode forward: each step of a small batch would otherwise spend far
//! longer launching its ~600 kernels from the host than the GPU spends running them.
//!
//! A decode step's shape is made one of a few: its batch rows padded up to a bucket of slots
//! (from slot 0), its keys up to a power of two (see [`padded_layout`]). The first step of a
//! shape runs eagerly on a side stream, then is captured; later steps of that shape copy their
//! index arrays into the graph's input buffer and replay it. Every graph shares one memory pool.
//! Graphs hold the addresses of the weights and of the KV cache they were captured over, so a
//! [`GraphCache`] lives and dies with its decoder.
//!
//! The shim (`src/native/cuda_graph.cpp`) is compiled only where libtorch has CUDA; elsewhere
//! [`available`] is false and nothing here is reached.

use std::collections::HashMap;

use tch::{Device, Tensor};

/// Batch-row buckets: a step of `n` rows runs as the first bucket ≥ n (padding rows are cheap
/// on a GPU that is bound by reading the weights).
const BATCH_BUCKETS: [usize; 15] = [1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512];

/// Fewest keys a graph attends over.
const MIN_KEYS: usize = 64;

/// The fixed shape of one captured forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GraphKey {
    /// Batch rows (slots `0 .. rows`).
    pub rows: usize,
    /// Query rows per batch row.
    pub queries: usize,
    /// Keys every row attends over.
    pub keys: usize,
    /// Tokens per block.
    pub block: usize,
}

/// The padded shape a decode step runs at under graphs, or `None` if it runs eagerly: a step
/// whose highest slot is `top_slot`, longest query `queries` (more than two blocks: a prefill)
/// and longest key range `keys`, in a cache of `slots` slots of `slot_positions` positions.
pub fn padded_layout(
    top_slot: usize,
    queries: usize,
    keys: usize,
    block: usize,
    slots: usize,
    slot_positions: usize,
) -> Option<GraphKey> {
    if queries == 0 || queries > 2 * block || top_slot >= slots {
        return None;
    }
    let rows = BATCH_BUCKETS
        .iter()
        .copied()
        .find(|&bucket| bucket > top_slot)?
        .min(slots);
    let keys = keys.max(MIN_KEYS).next_power_of_two().min(slot_positions);
    Some(GraphKey {
        rows,
        queries,
        keys,
        block,
    })
}

/// Whether this build can capture CUDA graphs.
pub fn available() -> bool {
    cfg!(t3d_cuda_graphs)
}

#[cfg(t3d_cuda_graphs)]
#[allow(unsafe_code)]
mod ffi {
    use std::ffi::{c_char, c_int, c_void};

    extern "C" {
        pub fn t3d_graph_last_error(out: *mut c_char, capacity: i64);
        pub fn t3d_graph_new() -> *mut c_void;
        pub fn t3d_graph_enter_stream(graph: *mut c_void, device: c_int) -> c_int;
        pub fn t3d_graph_capture_begin(graph: *mut c_void, share_pool_of: *mut c_void) -> c_int;
        pub fn t3d_graph_capture_end(graph: *mut c_void) -> c_int;
        pub fn t3d_graph_replay(graph: *mut c_void) -> c_int;
        pub fn t3d_graph_free(graph: *mut c_void);
    }

    /// This thread's last shim error.
    pub fn last_error() -> String {
        let mut buffer = vec![0u8; 512];
        // SAFETY: the shim writes at most `capacity` bytes, NUL included.
        unsafe { t3d_graph_last_error(buffer.as_mut_ptr().cast::<c_char>(), 512) };
        let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
        String::from_utf8_lossy(&buffer[..end])
            .lines()
            .next()
            .unwrap_or("CUDA graph call failed")
            .to_string()
    }
}

/// One `at::cuda::CUDAGraph`, freed on drop.
#[derive(Debug)]
struct RawGraph(#[cfg(t3d_cuda_graphs)] *mut std::ffi::c_void);

#[cfg(t3d_cuda_graphs)]
#[allow(unsafe_code)]
impl RawGraph {
    fn new() -> Result<Self, String> {
        // SAFETY: plain constructor; null means failure.
        let raw = unsafe { ffi::t3d_graph_new() };
        if raw.is_null() {
            Err(ffi::last_error())
        } else {
            Ok(Self(raw))
        }
    }

    fn check(status: std::ffi::c_int) -> Result<(), String> {
        if status == 0 {
            Ok(())
        } else {
            Err(ffi::last_error())
        }
    }

    fn enter_stream(&self, device: usize) -> Result<(), String> {
        // SAFETY: `self.0` is a live graph.
        Self::check(unsafe { ffi::t3d_graph_enter_stream(self.0, device as i32) })
    }

    fn capture_begin(&self, share_pool_of: Option<&RawGraph>) -> Result<(), String> {
        let other = share_pool_of.map_or(std::ptr::null_mut(), |g| g.0);
        // SAFETY: both are live graphs (or null).
        Self::check(unsafe { ffi::t3d_graph_capture_begin(self.0, other) })
    }

    fn capture_end(&self) -> Result<(), String> {
        // SAFETY: `self.0` is a live graph.
        Self::check(unsafe { ffi::t3d_graph_capture_end(self.0) })
    }

    fn replay(&self) -> Result<(), String> {
        // SAFETY: `self.0` is a live, captured graph.
        Self::check(unsafe { ffi::t3d_graph_replay(self.0) })
    }
}

#[cfg(t3d_cuda_graphs)]
#[allow(unsafe_code)]
impl Drop for RawGraph {
    fn drop(&mut self) {
        // SAFETY: `self.0` came from `t3d_graph_new` and is freed once.
        unsafe { ffi::t3d_graph_free(self.0) }
    }
}

#[cfg(not(t3d_cuda_graphs))]
impl RawGraph {
    fn new() -> Result<Self, String> {
        Err("this build has no CUDA graph support".into())
    }
    fn enter_stream(&self, _: usize) -> Result<(), String> {
        Err("no CUDA graphs".into())
    }
    fn capture_begin(&self, _: Option<&RawGraph>) -> Result<(), String> {
        Err("no CUDA graphs".into())
    }
    fn capture_end(&self) -> Result<(), String> {
        Ok(())
    }
    fn replay(&self) -> Result<(), String> {
        Err("no CUDA graphs".into())
    }
}

/// A captured forward: the input buffer it reads and the output it writes.
#[derive(Debug)]
struct Captured {
    // Declared first: the graph goes before the tensors its pool holds.
    graph: RawGraph,
    input: Tensor,
    output: Tensor,
}

/// How a step's forward ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphRun {
    /// Replayed a graph captured earlier.
    Replayed,
    /// Ran eagerly, then captured a graph for the next step of its shape.
    Captured,
}

/// The graphs of one decoder, by shape.
#[derive(Debug)]
pub struct GraphCache {
    device: usize,
    graphs: HashMap<GraphKey, Captured>,
    /// The first graph captured: the others share its memory pool.
    pool_owner: Option<GraphKey>,
    /// Set when a capture failed: every later step runs eagerly.
    failed: Option<String>,
}

impl GraphCache {
    /// Graphs on CUDA device `device`.
    pub fn new(device: usize) -> Self {
        Self {
            device,
            graphs: HashMap::new(),
            pool_owner: None,
            failed: None,
        }
    }

    /// Graphs captured so far.
    pub fn len(&self) -> usize {
        self.graphs.len()
    }

    /// Whether none is captured.
    pub fn is_empty(&self) -> bool {
        self.graphs.is_empty()
    }

    /// Why graphs were turned off, if a capture failed.
    pub fn failure(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    /// The output of `forward(input)` for a step of shape `key`: a replay of its graph (after
    /// copying `input` into the graph's buffer), or on the first step of that shape an eager
    /// run followed by a capture. `forward` must be a pure function of its input's values and
    /// device state (no host reads). `Err` when the shape's capture or replay failed; graphs are
    /// then off for good and the caller runs the step eagerly.
    pub fn run(
        &mut self,
        key: GraphKey,
        input: &Tensor,
        forward: &dyn Fn(&Tensor) -> Tensor,
    ) -> Result<(Tensor, GraphRun), String> {
        if let Some(message) = &self.failed {
            return Err(message.clone());
        }
        if let Some(captured) = self.graphs.get(&key) {
            super::transfer::copy_on_device(&captured.input, input);
            return match captured.graph.replay() {
                Ok(()) => Ok((captured.output.shallow_clone(), GraphRun::Replayed)),
                Err(e) => Err(self.fail(e)),
            };
        }
        match self.capture(key, input, forward) {
            Ok(output) => Ok((output, GraphRun::Captured)),
            Err(e) => Err(self.fail(e)),
        }
    }

    fn fail(&mut self, message: String) -> String {
        tracing::warn!(error = %message, "CUDA graph failed; decoding eagerly from now on");
        self.graphs.clear();
        self.pool_owner = None;
        self.failed = Some(message.clone());
        message
    }

    /// Runs `forward` eagerly on a side stream (its result is this step's), then captures it.
    fn capture(
        &mut self,
        key: GraphKey,
        input: &Tensor,
        forward: &dyn Fn(&Tensor) -> Tensor,
    ) -> Result<Tensor, String> {
        let graph = RawGraph::new()?;
        let buffer = input.copy();
        graph.enter_stream(self.device)?;
        let pool = self.pool_owner.and_then(|k| self.graphs.get(&k));
        let captured = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let eager = forward(&buffer);
            graph.capture_begin(pool.map(|c| &c.graph))?;
            let output = forward(&buffer);
            Ok::<_, String>((eager, output))
        }));
        let ended = graph.capture_end();
        let (eager, output) = match captured {
            Ok(result) => result?,
            Err(panic) => return Err(super::decoder::panic_message(&*panic)),
        };
        ended?;
        self.pool_owner.get_or_insert(key);
        self.graphs.insert(
            key,
            Captured {
                graph,
                input: buffer,
                output,
            },
        );
        Ok(eager)
    }
}

/// Whether graphs apply to `device` under the user's choice `enabled`.
pub fn wanted(enabled: bool, device: Device) -> Option<usize> {
    match device {
        Device::Cuda(index) if enabled && available() => Some(index),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_pad_to_the_bucket_above_the_highest_slot() {
        let layout = |top, slots| padded_layout(top, 8, 300, 4, slots, 4096).map(|k| k.rows);
        assert_eq!(layout(0, 128), Some(1));
        assert_eq!(layout(1, 128), Some(2));
        assert_eq!(layout(2, 128), Some(4));
        assert_eq!(layout(8, 128), Some(16));
        assert_eq!(layout(16, 128), Some(24));
        assert_eq!(layout(100, 128), Some(128));
        // Never past the cache's slots; a slot outside it is no graph step.
        assert_eq!(layout(40, 42), Some(42));
        assert_eq!(layout(42, 42), None);
        assert_eq!(layout(600, 1024), None);
    }

    #[test]
    fn keys_pad_to_a_power_of_two_within_a_slot() {
        let keys = |k, slot_positions| padded_layout(0, 4, k, 4, 8, slot_positions).map(|g| g.keys);
        assert_eq!(keys(5, 4096), Some(64));
        assert_eq!(keys(64, 4096), Some(64));
        assert_eq!(keys(65, 4096), Some(128));
        assert_eq!(keys(260, 4096), Some(512));
        assert_eq!(keys(3000, 3008), Some(3008));
    }

    #[test]
    fn prefill_steps_run_eagerly() {
        assert!(padded_layout(0, 8, 100, 4, 8, 4096).is_some());
        assert!(padded_layout(0, 9, 100, 4, 8, 4096).is_none());
        assert!(padded_layout(0, 0, 100, 4, 8, 4096).is_none());
    }

    #[test]
    fn graphs_only_on_cuda() {
        assert_eq!(wanted(true, Device::Cpu), None);
        assert_eq!(wanted(false, Device::Cuda(0)), None);
        assert_eq!(wanted(true, Device::Cuda(1)), available().then_some(1));
    }
}
