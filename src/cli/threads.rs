//! The serving thread layout, chosen from the cores the process may use (CPU affinity and the
//! cgroup quota, as `available_parallelism` reads them): libtorch's intra-op threads take every
//! core for the engine's forwards; the tokio runtime (HTTP, gRPC, admin) gets a quarter of them
//! (at least one) and runs at a lower priority, so under a flood of requests the engine keeps
//! the CPU it needs and goodput holds while the surplus is shed.

use super::args::ServeArgs;

/// Threads and priorities of `t3d serve`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThreadLayout {
    /// libtorch intra-op threads.
    pub intra_op: usize,
    /// Tokio worker threads.
    pub http_workers: usize,
    /// Nice value added to the tokio threads (0 = same priority as the engine).
    pub http_nice: i32,
}

impl ThreadLayout {
    /// The layout for `cores` usable cores; `threads` / `http_workers` override it when > 0.
    pub fn choose(cores: usize, threads: usize, http_workers: usize, http_nice: i32) -> Self {
        let cores = cores.max(1);
        Self {
            intra_op: if threads > 0 { threads } else { cores },
            http_workers: if http_workers > 0 {
                http_workers
            } else {
                (cores / 4).clamp(1, 8)
            },
            http_nice: http_nice.clamp(0, 19),
        }
    }

    /// The layout for `args` on this machine.
    pub fn for_serve(args: &ServeArgs) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        let threads = usize::try_from(args.device.threads).unwrap_or(0);
        Self::choose(cores, threads, args.http_workers, args.http_nice)
    }

    /// The tokio runtime of this layout (its threads lower their priority as they start).
    pub fn runtime(&self) -> std::io::Result<tokio::runtime::Runtime> {
        let nice = self.http_nice;
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(self.http_workers)
            .thread_name("t3d-http")
            .on_thread_start(move || lower_current_thread_priority(nice))
            .enable_all()
            .build()
    }
}

/// Adds `nice` to the calling thread's nice value (Linux threads have their own).
// The crate denies unsafe code; these two calls touch no memory.
#[allow(unsafe_code)]
fn lower_current_thread_priority(nice: i32) {
    if nice == 0 {
        return;
    }
    // SAFETY: gettid and getpriority/setpriority on the calling thread's own id.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        let current = libc::getpriority(libc::PRIO_PROCESS, tid);
        if libc::setpriority(libc::PRIO_PROCESS, tid, (current + nice).min(19)) != 0 {
            tracing::warn!("could not lower the priority of an HTTP thread");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_engine_gets_every_core_and_http_a_quarter() {
        assert_eq!(
            ThreadLayout::choose(2, 0, 0, 10),
            ThreadLayout {
                intra_op: 2,
                http_workers: 1,
                http_nice: 10
            }
        );
        assert_eq!(ThreadLayout::choose(16, 0, 0, 10).http_workers, 4);
        assert_eq!(ThreadLayout::choose(128, 0, 0, 10).http_workers, 8);
        let custom = ThreadLayout::choose(16, 3, 5, 40);
        assert_eq!(
            (custom.intra_op, custom.http_workers, custom.http_nice),
            (3, 5, 19)
        );
    }
}
